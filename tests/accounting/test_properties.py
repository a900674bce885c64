"""Property tests of the money paths (issue 15): Hypothesis draws sequences of requests across
every policy (first, fallbacks, a judged cascade, hedges, resumed streams, soft-limit downgrades),
upstream behaviours (answers, 5xx, 429, cut streams, absurd or missing usage), clients that go
away, on overlapping budget rules; after each sequence no limit is passed, nothing stays
reserved, the ledger equals the usage priced, and no entry is lost or doubled
(``switchman.testing.money``). ``SWITCHMAN_PROPERTY_EXAMPLES`` sets how many sequences a backend
gets (default 25 here; ``benchmarks/ledger.py`` runs hundreds)."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from switchman.testing.money import BEHAVIOURS, ROUTES, Step, run

from .conftest import REDIS_URL, SLOW_OK, _flush, pg_base, pg_schema, redis_available, unique

EXAMPLES = int(os.environ.get("SWITCHMAN_PROPERTY_EXAMPLES", "25"))

steps = st.lists(st.builds(
    Step,
    route=st.sampled_from(ROUTES),
    behaviour=st.sampled_from(BEHAVIOURS),
    stream=st.booleans(),
    max_tokens=st.one_of(st.none(), st.integers(1, 400)),
    prompt_chars=st.integers(1, 4000),
    user=st.sampled_from(["alice", "bob"]),
    team=st.sampled_from(["search", "ads"]),
    leave=st.sampled_from([False, False, False, True]),
), min_size=1, max_size=12)

PROFILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check(seq, ledger_url: str, state: str = "{backend: memory}") -> None:
    out = asyncio.run(run(seq, ledger_url, state))
    assert out.overshoot == 0 and not out.problems, out.problems


@PROFILE
@given(seq=steps)
def test_memory_state_sqlite_ledger(tmp_path_factory, seq):
    check(seq, f"sqlite:///{tmp_path_factory.mktemp('ledger')}/l.db")


@pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")
@PROFILE
@given(seq=steps)
def test_redis_state_sqlite_ledger(tmp_path_factory, seq):
    prefix = "{" + unique("prop") + "}:"
    try:
        check(seq, f"sqlite:///{tmp_path_factory.mktemp('ledger')}/l.db",
              f'{{backend: redis, url: "{REDIS_URL}", prefix: "{prefix}", timeout: {SLOW_OK}}}')
    finally:
        _flush(prefix)


@pytest.mark.skipif(pg_base() is None, reason="no PostgreSQL on 127.0.0.1:5432")
@settings(PROFILE, max_examples=max(EXAMPLES // 3, 1))  # a schema and its migrations per sequence: slower
@given(seq=steps)
def test_memory_state_postgres_ledger(seq):
    with pg_schema() as url:
        check(seq, url)
