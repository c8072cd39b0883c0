"""When shared sources sync: APScheduler 3 jobs, one per source, each on its own interval
with jitter, never two runs of one source at once, and exponential backoff after failures."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from gateway.logs import event
from gateway.source_state import SourceState


def retry_delay(state: SourceState) -> float:
    """After n failures in a row: retry_interval * 2^(n-1), at most the source's interval."""
    config = state.config
    return float(min(config.interval, config.retry_interval * 2 ** max(0, state.failures - 1)))


class SyncScheduler:
    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC)
        #: Whether a scheduled sync runs here (replicas: only on the leader).
        self.runs_here: Callable[[SourceState], bool] = lambda state: True

    def start(self, states: list[SourceState]) -> None:
        for state in states:
            interval = state.config.interval
            self._scheduler.add_job(
                self.run,
                IntervalTrigger(seconds=interval, jitter=max(1, int(interval * 0.1))),
                args=[state],
                id=state.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        self._scheduler.start()

    async def run(self, state: SourceState) -> None:
        """One sync of `state`; after a failure the next one comes sooner (backoff). A
        replica that does not lead takes the leader's snapshot instead."""
        if not self.runs_here(state):
            await state.follow()
            return
        await state.refresh()
        if state.failures:
            delay = retry_delay(state)
            self._scheduler.modify_job(
                state.name, next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
            )
            event(
                "sync_retry",
                logging.WARNING,
                source=state.name,
                failures=state.failures,
                seconds=round(delay, 1),
            )

    def run_soon(self, state: SourceState, delay: float = 0.0) -> None:
        """Move the source's next run to `delay` seconds from now (a manual trigger)."""
        self._scheduler.modify_job(
            state.name, next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        )

    def next_run(self, name: str) -> float | None:
        """When the source `name` syncs next (a timestamp); None when it is not scheduled."""
        job = self._scheduler.get_job(name) if self._scheduler.running else None
        when = getattr(job, "next_run_time", None)
        return when.timestamp() if isinstance(when, dt.datetime) else None

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
