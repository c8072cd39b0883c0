"""What the console's overview shows of each source: read from the engine's source
instances and scheduler, never from upstream (a page view syncs nothing)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.engine import Engine
from gateway.source_state import SourceState


@dataclass(frozen=True)
class SourceRow:
    name: str
    type: str
    per_user: bool
    read_only: bool
    #: Shared: its one instance; per user: the instances in memory now.
    instances: int
    entries: int
    last_sync: float | None
    last_error: str | None
    #: Instances whose last sync failed (per-user sources: of those in memory).
    failing: int
    next_run: float | None
    held_back: tuple[int, int] | None


def source_rows(engine: Engine) -> list[SourceRow]:
    shared = {state.name: state for state in engine.sources.shared_states()}
    rows = []
    for name, config in engine.config.sources.items():
        if name in shared:
            states = [shared[name]]
        else:
            states = [s for s in engine.sources.states() if s.name == name and s.user is not None]
        errors = [s.last_error for s in states if s.last_error]
        rows.append(
            SourceRow(
                name=name,
                type=config.type,
                per_user=name not in shared,
                read_only=config.read_only,
                instances=len(states),
                entries=sum(len(s.contacts) for s in states),
                last_sync=max((s.synced_at for s in states if s.synced_at), default=None),
                last_error=errors[0] if errors else None,
                failing=len(errors),
                next_run=_next_run(engine, shared[name]) if name in shared else None,
                held_back=next((s.held_back for s in states if s.held_back), None),
            )
        )
    return rows


def _next_run(engine: Engine, state: SourceState) -> float | None:
    """When the scheduler runs the source next (None before the engine started it)."""
    return engine.sources.scheduler.next_run(state.name)
