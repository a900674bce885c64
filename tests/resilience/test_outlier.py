import pytest

from switchman.clock import VirtualClock
from switchman.errors import Origin
from switchman.resilience.outlier import EjectionPolicy, HealthState, OutlierDetector

L, U = Origin.LOCAL, Origin.UPSTREAM


def detector(**policy) -> tuple[OutlierDetector, VirtualClock, list[tuple[str, str, str]]]:
    clock = VirtualClock()
    events: list[tuple[str, str, str]] = []
    d = OutlierDetector(EjectionPolicy(**policy), clock, on_event=lambda *e: events.append(e))
    return d, clock, events


def fail(d: OutlierDetector, model: str, n: int, origin: Origin = U) -> None:
    for _ in range(n):
        d.record_failure(model, origin, "server_error(500)")


def test_n_failures_within_the_window_eject():
    d, clock, events = detector(failures=3, window=10.0, cooldown=30.0)
    fail(d, "m", 2)
    assert d.state("m") is HealthState.HEALTHY and d.admit("m") == (True, "healthy")
    clock.advance(9.0)
    fail(d, "m", 1)
    assert d.state("m") is HealthState.EJECTED
    ok, why = d.admit("m")
    assert not ok and why == "ejected 30.0s left"
    assert [e[:2] for e in events] == [("m", "ejected")]


def test_failures_spread_beyond_the_window_do_not_eject():
    d, clock, _ = detector(failures=3, window=10.0)
    for _ in range(10):
        fail(d, "m", 1)
        clock.advance(5.1)  # any three span more than 10 s
    assert d.state("m") is HealthState.HEALTHY


def test_a_success_breaks_the_run():
    d, _, _ = detector(failures=3)
    for _ in range(5):
        fail(d, "m", 2)
        d.record_success("m")
    assert d.state("m") is HealthState.HEALTHY


def test_local_and_upstream_failures_are_counted_apart():
    d, _, _ = detector(failures=3)
    fail(d, "m", 2, L)
    fail(d, "m", 2, U)  # an upstream answer also proves connecting works: the local run restarts
    fail(d, "m", 2, L)
    assert d.state("m") is HealthState.HEALTHY
    row = d.snapshot()[0]
    assert (row["failures_local"], row["failures_upstream"]) == (2, 2)
    fail(d, "m", 1, L)
    assert d.state("m") is HealthState.EJECTED


def test_exactly_one_probe_when_the_cooldown_ends():
    d, clock, events = detector(failures=1, cooldown=30.0)
    fail(d, "m", 1)
    clock.advance(29.9)
    assert d.admit("m")[0] is False
    clock.advance(0.1)
    assert d.admit("m") == (True, "probe")
    assert d.state("m") is HealthState.PROBING
    assert [d.admit("m") for _ in range(3)] == [(False, "probe in flight")] * 3
    assert [e[1] for e in events] == ["ejected", "probe"]


def test_probe_success_readmits_and_resets_the_cooldown_growth():
    d, clock, events = detector(failures=1, cooldown=10.0)
    fail(d, "m", 1)
    clock.advance(10.0)
    d.admit("m")
    fail(d, "m", 1)  # probe fails: 20 s
    clock.advance(20.0)
    assert d.admit("m") == (True, "probe")
    d.record_success("m")
    assert d.state("m") is HealthState.HEALTHY and d.admit("m") == (True, "healthy")
    assert events[-1] == ("m", "readmitted", "probe succeeded")
    fail(d, "m", 1)
    assert d.snapshot()[0]["ejected_until"] == 10.0  # back to the base cooldown


def test_cooldown_doubles_with_failed_probes_up_to_the_cap():
    d, clock, _ = detector(failures=1, cooldown=30.0, max_cooldown=300.0)
    fail(d, "m", 1)
    seen = []
    for _ in range(6):
        row = d.snapshot()[0]
        seen.append(row["ejected_until"])
        clock.advance(row["ejected_until"])
        assert d.admit("m") == (True, "probe")
        fail(d, "m", 1)
    assert seen == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    assert d.snapshot()[0]["ejections"] == 7


def test_stragglers_do_not_change_an_ejection():
    d, clock, _ = detector(failures=1, cooldown=30.0)
    fail(d, "m", 1)
    clock.advance(10.0)
    d.record_success("m")  # an attempt started before the ejection answered after it
    fail(d, "m", 3)  # and others failed late
    assert d.state("m") is HealthState.EJECTED
    assert d.snapshot()[0]["ejected_until"] == 20.0


def test_an_unanswered_probe_expires_and_can_be_abandoned():
    d, clock, _ = detector(failures=1, cooldown=5.0, probe_timeout=10.0)
    fail(d, "m", 1)
    clock.advance(5.0)
    assert d.admit("m") == (True, "probe")
    clock.advance(9.0)
    assert d.admit("m")[0] is False
    clock.advance(1.0)  # the first probe never reported back
    assert d.admit("m") == (True, "probe")
    d.abandon_probe("m")  # e.g. the probe attempt lost a hedge race
    assert d.admit("m") == (True, "probe")


def test_health_check_readmits_without_waiting():
    d, _, events = detector(failures=1, cooldown=60.0)
    fail(d, "m", 1)
    assert d.unhealthy() == ["m"]
    d.readmit("m")
    assert d.admit("m") == (True, "healthy") and d.unhealthy() == []
    assert events[-1] == ("m", "readmitted", "health check")
    fail(d, "m", 1)  # failing again right after: the ejection count kept growing
    assert d.snapshot()[0]["ejected_until"] == 120.0


def test_filter_skips_ejected_models_in_order():
    d, _, _ = detector(failures=1, max_ejection_percent=50.0)
    fail(d, "b", 1)
    admitted, skipped = d.filter(["a", "b", "c", "d"])
    assert admitted == ["a", "c", "d"]
    assert skipped == [("b", "ejected 30.0s left")]


def test_filter_admits_a_model_whose_cooldown_is_over_and_admit_hands_out_the_probe():
    d, clock, _ = detector(failures=1, cooldown=30.0)
    fail(d, "b", 1)
    clock.advance(30.0)
    assert d.filter(["a", "b"]).admitted == ["a", "b"]
    assert d.state("b") is HealthState.EJECTED  # filtering alone takes no probe
    assert d.admit("b") == (True, "probe")
    assert d.filter(["a", "b"]).skipped == [("b", "probe in flight")]


def test_never_more_than_max_ejection_percent_least_recently_ejected_stay():
    d, clock, _ = detector(failures=1, cooldown=100.0, max_ejection_percent=50.0)
    for m in ["a", "b", "c"]:
        fail(d, m, 1)
        clock.advance(1.0)
    adm = d.filter(["a", "b", "c", "d"])
    assert adm.admitted == ["a", "d"]  # 2 of 4 may go: the two most recent ejections
    assert [m for m, _ in adm.skipped] == ["b", "c"]
    assert list(adm.forced) == ["a"] and adm.forced["a"].startswith("max_ejection_percent 50")
    ok, why = d.admit("a", forced=True)
    assert ok and why.endswith("tried anyway")
    assert d.admit("a") == (False, "ejected 97.0s left")


def test_at_least_one_may_be_ejected_however_small_the_percent():
    d, _, _ = detector(failures=1, max_ejection_percent=10.0)
    fail(d, "a", 1)
    assert d.filter(["a", "b", "c"]).admitted == ["b", "c"]


def test_panic_mode_when_every_candidate_is_unhealthy():
    d, _, _ = detector(failures=1)
    fail(d, "a", 1)
    fail(d, "b", 1)
    adm = d.filter(["a", "b"])
    admitted, skipped = adm
    assert admitted == ["a", "b"] and skipped == []
    assert set(adm.forced) == {"a", "b"}
    assert adm.forced["a"].startswith("panic: all 2 candidates unhealthy")
    # a single-model route is never left with nothing to try
    assert d.filter(["a"]).admitted == ["a"]


def test_healthy_routes_take_the_fast_path():
    d, _, _ = detector(failures=1)
    fail(d, "x", 1)
    adm = d.filter(["a", "b"])
    assert (adm.admitted, adm.skipped, adm.forced) == (["a", "b"], [], {})


def test_snapshot_for_the_admin_view():
    d, clock, _ = detector(failures=2, cooldown=30.0)
    d.record_failure("m", U, "m:server_error(500)")
    d.record_failure("m", U, "m:server_error(502)")
    clock.advance(12.5)
    rows = d.snapshot(["m", "never-seen"])
    assert rows[0] == {"model": "m", "state": "ejected", "failures_local": 0, "failures_upstream": 0,
                       "ejections": 1, "ejected_until": 17.5, "last_error": "m:server_error(502)"}
    assert rows[1]["state"] == "healthy" and rows[1]["ejected_until"] == 0.0


def test_policy_is_validated():
    with pytest.raises(ValueError):
        OutlierDetector(EjectionPolicy(failures=0), VirtualClock())
