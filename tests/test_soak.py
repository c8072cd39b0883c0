"""The soak (bench/soak.py, issue 18) for one minute: 1,000 phones, 2,000 people in slapd,
a Radicale book for a tenth of the users, upstream churn, and every fault of the schedule
(slapd stopped, Radicale answering 500 and slowly, the gateway SIGKILLed and reloaded,
state_dir full when root). Only the invariants are asserted, never a timing: every edit
answered 200 is upstream exactly once (or its conflict logged), nothing a phone never saw
is deleted, no 5xx outside the documented windows, the outbox drains, the gateway serves
at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import Options, run, table
from tests.ldap import server as ldap_server


@pytest.mark.skipif(
    not ldap_server.SLAPD.exists(), reason="slapd is not installed (make test-servers)"
)
def test_soak_one_minute(tmp_path: Path) -> None:
    options = Options(
        phones=1000,
        people=2000,
        seconds=60,
        poll=10,
        churn=1,
        ldap_interval="5s",
        book_interval="10s",
        edit_rate=0.1,
        concurrency=100,
        tmpfs_mb=128,
        folder=tmp_path / "soak",
    )
    result = run(options)
    report = table(result)
    problems = {name: found for name, found in result["problems"].items() if name != "rss"}
    assert result["edits_200"] > 0, report
    assert result["unseen_checked"] > 0, report
    assert not any(problems.values()), report
