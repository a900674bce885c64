"""Cache-aware stickiness through ``switchman serve``: a conversation stays on the model that holds
its warm prompt cache while that is cheaper than the policy's first choice uncached, says so in
``x-switchman-reason``, and failover still wins when that model fails."""

from __future__ import annotations

import aiohttp

from switchman.testing.fake_upstream import FakeModel

from telemetry.serving import serve, stop

MODELS = """\
  - {name: lead, provider: fake, model: lead, price: {input: 1, output: 2, cached_input: 0.5}}
  - {name: spare, provider: fake, model: spare, price: {input: 1.2, output: 2, cached_input: 0.12}}
  - {name: nocache, provider: fake, model: nocache, price: {input: 1.2, output: 2}}
"""
ROUTES = """\
  - {name: agent, policy: {kind: first, models: [lead, spare]}}
  - {name: plain, policy: {kind: first, models: [lead, nocache]}}
  - {name: unstuck, policy: {kind: first, models: [lead, spare]}, cache: {sticky: false}}
"""
SYSTEM = "You are a careful agent with a long manual. " * 200  # ~2,200 tokens


async def turn(http, s, route: str, episode: str, n: int) -> tuple[str, str]:
    body = {"model": route, "max_tokens": 50, "messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": f"step {n}"}]}
    async with http.post(s.base + "/v1/chat/completions", json=body,
                         headers={**s.admin(), "x-switchman-episode": episode}) as r:
        assert r.status == 200, await r.text()
        return r.headers["x-switchman-model"], r.headers["x-switchman-reason"]


async def test_a_conversation_stays_where_its_cache_is_and_failover_wins(tmp_path):
    s = await serve(tmp_path, extra_models=MODELS, routes=ROUTES,
                    models={"lead": FakeModel(), "spare": FakeModel(), "nocache": FakeModel()})
    try:
        async with aiohttp.ClientSession() as http:
            s.fake.models["lead"].error_status = 503  # the first turn fails over to spare
            model, _ = await turn(http, s, "agent", "ep-1", 1)
            assert model == "spare"
            s.fake.models["lead"].error_status = None
            model, why = await turn(http, s, "agent", "ep-1", 2)
            assert model == "spare" and "sticky: spare holds this conversation's prompt cache" in why
            # another conversation is not pulled along
            model, why = await turn(http, s, "agent", "ep-2", 1)
            assert model == "lead" and "sticky" not in why
            # the anchor fails: failover to lead, whatever stickiness said
            s.fake.models["spare"].error_status = 503
            model, why = await turn(http, s, "agent", "ep-1", 3)
            assert model == "lead" and "sticky" in why
            s.fake.models["spare"].error_status = None
            # a model without a cache discount holds nothing worth staying for
            s.fake.models["lead"].error_status = 503
            assert (await turn(http, s, "plain", "ep-3", 1))[0] == "nocache"
            s.fake.models["lead"].error_status = None
            model, why = await turn(http, s, "plain", "ep-3", 2)
            assert model == "lead" and "sticky" not in why
            # and a route can turn it off
            s.fake.models["lead"].error_status = 503
            assert (await turn(http, s, "unstuck", "ep-4", 1))[0] == "spare"
            s.fake.models["lead"].error_status = None
            assert (await turn(http, s, "unstuck", "ep-4", 2))[0] == "lead"
    finally:
        await stop(s)


def test_the_switch_rule_prices_both_sides():
    """Staying is chosen only while the cached prefix at the anchor's rates is no dearer than the
    whole prompt uncached at the policy's first choice."""
    from decimal import Decimal

    from switchman.clock import VirtualClock
    from switchman.config import ModelSpec, Price, ProviderSpec
    from switchman.routing.sticky import Affinity
    from switchman.types import ChatRequest, Message, Role, TextPart

    prov = ProviderSpec(name="p", kind="openai", wire="openai", base_url="http://x", api_key="k")
    cheap = ModelSpec(name="cheap", provider=prov, upstream="c", price=Price(Decimal("0.2"), Decimal("0.8")))
    held = ModelSpec(name="held", provider=prov, upstream="h",
                     price=Price(Decimal("3"), Decimal("15"), cached_input=Decimal("0.3")))
    clock = VirtualClock()
    a = Affinity(clock)
    req = ChatRequest(model="r", messages=[Message(Role.USER, [TextPart("x" * 40_000)])], max_tokens=10)
    a.remember("k", held, 10_000)
    # 10k tokens: held costs 10k x 0.3 + 10 x 15 = $0.00315; cheap 10k x 0.2 + 10 x 0.8 = $0.002008
    models, why = a.prefer("k", req, [cheap, held], "plan")
    assert models[0] is cheap and "left held's prompt cache" in why
    dear = ModelSpec(name="dear", provider=prov, upstream="d", price=Price(Decimal("1"), Decimal("4")))
    models, why = a.prefer("k", req, [dear, held], "plan")
    assert models[0] is held and "sticky: held" in why
    clock.advance(301)  # past the 5-minute cache TTL: nothing is held any more
    models, why = a.prefer("k", req, [dear, held], "plan")
    assert models[0] is dear and why == "plan"
