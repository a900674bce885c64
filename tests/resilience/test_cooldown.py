from switchman.clock import VirtualClock
from switchman.resilience.cooldown import Cooldowns


def test_a_rate_limited_model_is_out_until_retry_after_passes():
    clock = VirtualClock()
    c = Cooldowns(clock)
    assert c.remaining("m") == 0.0
    c.cool("m", 2.0)
    clock.advance(0.5)
    assert c.remaining("m") == 1.5
    assert c.remaining("other") == 0.0
    clock.advance(1.5)
    assert c.remaining("m") == 0.0


def test_a_shorter_retry_after_does_not_cut_a_longer_cooldown():
    clock = VirtualClock()
    c = Cooldowns(clock)
    c.cool("m", 10.0)
    c.cool("m", 1.0)
    clock.advance(5.0)
    assert c.remaining("m") == 5.0
    assert c.cooling() == {"m": 5.0}
