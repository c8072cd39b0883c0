"""Per-user state is bounded: what the engine's housekeeping drops or prunes for idle users.

- Per-user source instances (and their upstream sessions) of users idle for
  `[server] user_idle_timeout`, or beyond `max_active_users` (least recently used first),
  go from memory (`Sources.evict`, also done at once when a new user comes beyond the
  number); their renderings go with them (`Composer.forget`).
- Served-version histories unused as long go from memory too (`Versions.evict`), at
  most `max_active_users` per document are kept.
- Hourly, the database forgets served records older than keep_versions_for of users not
  in memory, and the versions nobody names any more (`Versions.prune`).

What is dropped from memory is in the database: the next request reads it back, so a
phone gets the same document and ETag, and a PUT merges against the same base.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.engine import Engine


async def evict_idle(engine: Engine, now: float | None = None) -> None:
    """One housekeeping round; `now`: a time.monotonic() value (tests move it on)."""
    server = engine.config.server
    engine.sources.evict(now)
    engine.versions.evict(
        server.user_idle_timeout,
        server.max_active_users * max(1, len(engine.config.documents)),
        now,
    )
    await engine.versions.prune_due()
