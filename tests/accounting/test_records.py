from decimal import Decimal

from switchman.accounting.records import (
    AttemptRecord, RequestRecord, Role, from_pusd, max_cost, parse_tags, to_nusd, to_pusd,
)
from switchman.config import Price

D = Decimal
SONNET = Price(input=D("3"), output=D("15"), cached_input=D("0.30"), cache_write=D("3.75"), cache_write_1h=D("6"))
MINI = Price(input=D("0.15"), output=D("0.60"), cached_input=D("0.075"))


def test_anthropic_cache_writes_and_reads_are_priced_apart():
    # 10,000 prompt tokens: 2,000 read from cache (0.1x), 3,000 written (2,000 for 5 minutes at
    # 1.25x, 1,000 for an hour at 2x), 5,000 plain; 500 out.
    got = SONNET.cost(10_000, 500, cache_read=2_000, cache_write=3_000, cache_write_1h=1_000)
    assert got == (5_000 * D(3) + 500 * D(15) + 2_000 * D("0.30") + 2_000 * D("3.75") + 1_000 * D(6)) / 1_000_000
    assert got == D("0.0366")


def test_one_hour_write_defaults_to_twice_input():
    assert Price(D("3"), D("15")).cost(1_000, 0, cache_write=1_000, cache_write_1h=1_000) == D("0.006")


def test_openai_cached_input_discount():
    assert MINI.cost(1_000, 100, cache_read=400) == D("0.00018")


def test_picodollars_hold_list_prices_exactly():
    c = MINI.cost(7, 3, cache_read=1)  # 6*0.15 + 1*0.075 + 3*0.6 = 2.775 microdollars
    assert to_pusd(c) == 2_775_000
    assert from_pusd(to_pusd(c)) == c


def test_reservations_round_up_never_down():
    assert to_nusd(D("0.0000000001"), up=True) == 1
    assert to_nusd(D("0.0000000001")) == 0


def test_max_cost_prices_every_prompt_token_uncached():
    assert max_cost(SONNET, 1_000, 2_000) == D("0.033")


def test_request_totals_are_the_sum_of_its_attempts():
    a0 = AttemptRecord(0, Role.FIRST, "cheap", "p1", 503, "overloaded")
    a1 = AttemptRecord(1, Role.HEDGE, "cheap", "p1", 200, input_tokens=10, output_tokens=4, cost=D("0.0001"))
    a2 = AttemptRecord(2, Role.FALLBACK, "big", "p2", 200, input_tokens=10, output_tokens=8, cost=D("0.002"),
                       estimated=True, ttft_ms=12.0)
    r = RequestRecord.from_attempts("req_1", 1.0, "auto", [a0, a1, a2], a2, reason="why")
    assert (r.model, r.provider, r.status, r.error) == ("big", "p2", 200, None)
    assert (r.input_tokens, r.output_tokens, r.cost, r.attempts) == (20, 12, D("0.0021"), 3)
    assert r.estimated and r.ttft_ms == 12.0


def test_a_request_nothing_answered_keeps_the_last_error():
    a0 = AttemptRecord(0, Role.FIRST, "cheap", "p1", 504, "timeout")
    r = RequestRecord.from_attempts("req_2", 1.0, "auto", [a0], None)
    assert (r.model, r.status, r.error, r.cost) == (None, 504, "timeout", D(0))


def test_tags_header():
    assert parse_tags("team=search, feature=chat,,x") == {"team": "search", "feature": "chat", "x": ""}
    assert parse_tags(None) == {}
