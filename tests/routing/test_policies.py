"""The route policies end to end, over real loopback HTTP with the OpenAI SDK: ``rules``,
``cheapest``, ``learned`` and ``cascade`` (each check escalating when it fails), the hybrid of
the three, and what the ledger makes of a cascade's rejected answers."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import openai
import pytest

from switchman import configfile
from switchman.app import App
from switchman.errors import ConfigError
from switchman.gateway import Gateway
from switchman.http.server import HttpServer
from switchman.metering import Metering
from switchman.outcomes import Dropped, OutcomeTable, Prompt
from switchman.routing.training import TrainParams, train_router
from switchman.testing.fake_upstream import FakeModel, FakeUpstream

# Three tiers on two providers; prices per 1M tokens.
MODELS = """
  - {name: cheap, provider: pa, price: {input: 0.1, output: 0.4}}
  - {name: mid, provider: pb, price: {input: 1, output: 4}}
  - {name: dear, provider: pa, price: {input: 10, output: 40}}
  - {name: grader, provider: pa, price: {input: 0.2, output: 0.8}}
"""
REFUSE = "I'm sorry, but I can't help with that request."


def _yaml(openai_url: str, anthropic_url: str, routes: str, extra: str = "") -> str:
    return f"""
providers:
  pa: {{kind: openai, base_url: "{openai_url}", api_key: "k"}}
  pb: {{kind: anthropic, base_url: "{anthropic_url}", api_key: "k"}}
models:
{MODELS}
routes:
{routes}
{extra}
"""


class Stack:
    def __init__(self, fake, gw, meter, server, base):
        self.fake, self.gw, self.meter, self.server, self.base = fake, gw, meter, server, base

    def calls(self, upstream: str) -> int:
        return sum(1 for r in self.fake.requests if r.model == upstream)

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base + "/v1", api_key="k", max_retries=0)

    async def ask(self, model: str = "auto", content: str = "hello there", headers: dict | None = None, **kw):
        """One non-streaming call: (headers, completion)."""
        async with self.client() as c:
            raw = await c.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": content}], extra_headers=headers or {}, **kw)
            return raw.headers, raw.parse()


@pytest.fixture
async def stack(tmp_path):
    made: list[Stack] = []

    async def start(routes: str, fakes: dict[str, FakeModel] | None = None, ledger: bool = False) -> Stack:
        fake = FakeUpstream({"cheap": FakeModel(), "mid": FakeModel(), "dear": FakeModel(), "grader": FakeModel(),
                             **(fakes or {})})
        await fake.start()
        text = _yaml(fake.url("openai"), fake.url("anthropic"), routes, "retry: {attempts: 1}\n" + (
            f'ledger: {{url: "sqlite:///{tmp_path}/ledger.db", flush_interval: 0.01}}' if ledger else ""))
        path = tmp_path / "switchman.yaml"
        path.write_text(text)
        gw = Gateway(configfile.load(str(path), env={}))
        meter = Metering.from_config(gw) if ledger else None
        if meter:
            await meter.start()
        server = HttpServer(App(gw, meter))
        port = await server.start("127.0.0.1", 0)
        s = Stack(fake, gw, meter, server, f"http://127.0.0.1:{port}")
        made.append(s)
        return s

    yield start
    for s in made:
        await s.server.stop(grace=0.2)
        if s.meter:
            await s.meter.close()
        await s.gw.close()
        await s.fake.stop(grace=0.1)


# -- rules ------------------------------------------------------------------------------------------

RULES = """
  - name: auto
    policy:
      kind: rules
      rules:
        - {name: search-team, when: {tags: {team: search}}, to: mid}
        - {name: tools, when: {tools: true}, to: dear}
        - {name: billing, when: {keywords: [refund, invoice]}, to: mid}
        - {name: translate, when: {regex: "(?i)^translate"}, to: dear}
        - {name: long, when: {tokens_over: 50}, to: dear}
        - {name: json, when: {json: true}, to: mid}
        - {name: vip, when: {user: [alice, bob]}, to: dear}
      default: {route: budget}
  - name: budget
    policy: {kind: cheapest, models: [cheap, mid, dear], min_quality: 0.5, quality: {cheap: 0.6, mid: 0.8, dear: 0.9}}
"""


async def test_rules_send_each_request_where_its_first_matching_rule_says(stack):
    s = await stack(RULES)
    h, _ = await s.ask(headers={"x-switchman-tags": "team=search,feature=chat"})
    assert (h["x-switchman-model"], h["x-switchman-route"]) == ("mid", "auto")
    assert h["x-switchman-reason"].startswith("rules:search-team->mid")
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    h, c = await s.ask(tools=tools)
    assert h["x-switchman-model"] == "dear" and c.choices[0].message.tool_calls
    h, _ = await s.ask(content="Where is my REFUND?")
    assert h["x-switchman-model"] == "mid" and "billing" in h["x-switchman-reason"]
    h, _ = await s.ask(content="refunding is not a keyword match")
    assert h["x-switchman-model"] == "cheap", "keywords match whole words only"
    h, _ = await s.ask(content="Translate this into French")
    assert h["x-switchman-model"] == "dear" and "translate" in h["x-switchman-reason"]
    h, _ = await s.ask(content="word " * 60)
    assert h["x-switchman-model"] == "dear" and "long" in h["x-switchman-reason"]
    h, _ = await s.ask(response_format={"type": "json_object"}, content="give json")
    assert h["x-switchman-model"] == "mid"
    h, _ = await s.ask(headers={"x-switchman-user": "bob"})
    assert h["x-switchman-model"] == "dear" and "vip" in h["x-switchman-reason"]
    assert not any("bob" in (r.body or b"").decode() for r in s.fake.requests), "the rules' user stays here"
    # no rule matches: the default route's policy plans, and its reason follows
    h, _ = await s.ask()
    assert h["x-switchman-model"] == "cheap"
    assert h["x-switchman-reason"].startswith("rules:default->route budget; cheapest:cheap")


async def test_rules_see_the_tags_and_user_a_virtual_key_carries(stack):
    """A key made for a team routes as that team's requests do, with no header from the caller;
    the caller's own tags still count, and the key's win where both name a tag."""
    s = await stack(RULES, ledger=True)
    key, _ = await s.meter.accountant.create_key(name="search-bot", tags={"team": "search"})
    vip, _ = await s.meter.accountant.create_key(name="alice-laptop", user="alice")
    h, _ = await s.ask(headers={"authorization": f"Bearer {key}"})
    assert h["x-switchman-model"] == "mid" and h["x-switchman-reason"].startswith("rules:search-team->mid")
    h, _ = await s.ask(headers={"authorization": f"Bearer {key}", "x-switchman-tags": "team=ads"})
    assert h["x-switchman-model"] == "mid", "the key's tag wins over the caller's, as in the ledger"
    h, _ = await s.ask(headers={"authorization": f"Bearer {vip}"})
    assert h["x-switchman-model"] == "dear" and "vip" in h["x-switchman-reason"]
    h, _ = await s.ask()  # no key: the default route
    assert h["x-switchman-model"] == "cheap"


# -- cheapest ---------------------------------------------------------------------------------------

async def test_cheapest_picks_the_cheapest_model_meeting_the_bar_and_falls_back_in_price_order(stack):
    s = await stack("""
  - name: auto
    policy: {kind: cheapest, models: [dear, mid, cheap], min_quality: 0.7, quality: {cheap: 0.6, mid: 0.75, dear: 0.9}}
  - name: strict
    policy: {kind: cheapest, models: [dear, mid, cheap], min_quality: 0.95, quality: {cheap: 0.6, mid: 0.75, dear: 0.9}}
""", {"mid": FakeModel(error_status=503)})
    h, _ = await s.ask()
    # mid is the cheapest good enough, but fails: the next good-enough model (dear), not cheap
    assert h["x-switchman-model"] == "dear"
    assert h["x-switchman-reason"].startswith("cheapest:mid q=0.75>=0.70")
    assert s.calls("cheap") == 0
    h, _ = await s.ask("strict")
    assert h["x-switchman-model"] == "dear" and "none reaches q>=0.95" in h["x-switchman-reason"]


# -- learned ----------------------------------------------------------------------------------------

MATH = ["what is {} plus {}", "compute {} times {}", "solve {} minus {} for me", "divide {} by {}"]
POEM = ["write a poem about {} and {}", "a sonnet on {} with {}", "compose verses about {} {}", "a haiku of {} {}"]


def _router_file(tmp_path) -> str:
    """A router trained on outcomes where 'cheap' is right on arithmetic only; 'dear' always."""
    rng = np.random.default_rng(0)
    prompts, q = [], []
    for i in range(160):
        tpl = (MATH if i % 2 == 0 else POEM)[rng.integers(4)]
        prompts.append(Prompt(f"p{i}", tpl.format(rng.integers(100), rng.integers(100)), "t", None))
        q.append([1.0 if i % 2 == 0 else 0.0, 1.0])
    quality = np.array(q)
    cost = np.tile([0.001, 0.01], (len(prompts), 1))
    nan = np.full_like(quality, np.nan)
    table = OutcomeTable(prompts, ["small-model", "dear"], quality, cost, nan, nan, nan, None, Dropped())
    path = tmp_path / "router.npz"
    train_router(table, cost, params=TrainParams(c=10.0)).save(path)
    return str(path)


async def test_learned_router_picks_by_prompt(stack, tmp_path):
    _router_file(tmp_path)
    s = await stack("""
  - name: auto
    policy: {kind: learned, router: router.npz, models: [cheap, dear], min_quality: 0.7, aliases: {cheap: small-model}}
""")
    h, _ = await s.ask(content="compute 12 times 7")
    assert h["x-switchman-model"] == "cheap" and h["x-switchman-reason"].startswith("learned:q=")
    h, _ = await s.ask(content="write a poem about the sea and a cat")
    assert h["x-switchman-model"] == "dear"


async def test_learned_router_uses_the_task_the_request_is_tagged_with(stack, tmp_path):
    """Trained where only the task says whether 'cheap' is right (support replies: yes; legal
    review: no), the router follows the request's tag named by ``task_tag``."""
    rng = np.random.default_rng(2)
    prompts, q = [], []
    for i in range(160):
        task = "support" if i % 2 == 0 else "legal"
        prompts.append(Prompt(f"p{i}", (MATH + POEM)[rng.integers(8)].format(rng.integers(100), rng.integers(100)), task, None))
        q.append([1.0 if task == "support" else 0.0, 1.0])
    quality = np.array(q)
    cost = np.tile([0.001, 0.01], (len(prompts), 1))
    nan = np.full_like(quality, np.nan)
    table = OutcomeTable(prompts, ["cheap", "dear"], quality, cost, nan, nan, nan, None, Dropped())
    train_router(table, cost).save(tmp_path / "router.npz")
    s = await stack("""
  - name: auto
    policy: {kind: learned, router: router.npz, models: [cheap, dear], min_quality: 0.7, task_tag: feature}
""")
    h, _ = await s.ask(content="compute 12 times 7", headers={"x-switchman-tags": "team=web,feature=support"})
    assert h["x-switchman-model"] == "cheap" and h["x-switchman-reason"].endswith(",task=support")
    h, _ = await s.ask(content="compute 12 times 7", headers={"x-switchman-tags": "feature=legal"})
    assert h["x-switchman-model"] == "dear" and h["x-switchman-reason"].endswith(",task=legal")
    h, _ = await s.ask(content="compute 12 times 7")  # untagged: the text alone, which cannot tell
    assert h["x-switchman-model"] == "dear" and "task=" not in h["x-switchman-reason"]
    assert s.calls("cheap") == 1 and s.calls("dear") == 2


# -- cascade ----------------------------------------------------------------------------------------

def _cascade(checks: str = "{}", models: str = "[cheap, mid, dear]", start: str = "") -> str:
    return f"""
  - name: auto
    policy: {{kind: cascade, models: {models}, checks: {checks}{start}}}
"""


async def test_cascade_escalates_a_refusal_and_the_ledger_pays_for_both_answers(stack):
    s = await stack(_cascade(), {"cheap": FakeModel(reply=REFUSE)}, ledger=True)
    h, c = await s.ask(content="please help me plan a trip")
    assert h["x-switchman-model"] == "mid"
    assert c.choices[0].message.content.startswith("echo: please help")
    assert "cheap rejected: refusal" in h["x-switchman-reason"] and "mid passed checks" in h["x-switchman-reason"]
    assert s.calls("cheap") == 1 and s.calls("mid") == 1 and s.calls("dear") == 0
    await s.meter.accountant.ledger.drain()
    rows = {r.group: r for r in await s.meter.accountant.spend(by="model")}
    expect = Decimal(0)
    for name in ("cheap", "mid"):
        st = s.fake.stats[name]
        expect += s.gw.config.models[name].price.cost(st.input_tokens, st.output_tokens)
    assert s.fake.stats["cheap"].output_tokens > 0
    assert sum(Decimal(str(r.cost)) for r in rows.values()) == expect, "the rejected answer is paid for too"
    assert Decimal(h["x-switchman-cost-usd"]) == expect, "the cost header counts it as well"


async def test_cascade_streams_only_an_answer_that_passed(stack):
    s = await stack(_cascade(), {"cheap": FakeModel(reply=""), "mid": FakeModel(chunks=3)})
    async with s.client() as c:
        stream = await c.chat.completions.create(model="auto", stream=True,
                                                 messages=[{"role": "user", "content": "tell me"}])
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
    assert text == "echo: tell me", "the client sees the passing model's answer alone"
    cheap_req = next(r for r in s.fake.requests if r.model == "cheap")
    assert cheap_req.json.get("stream") is not True, "the checked stage is buffered, not streamed"
    assert s.calls("dear") == 0


async def test_cascade_checks_json_against_the_schema(stack):
    s = await stack(_cascade(models="[cheap, dear]"),
                    {"cheap": FakeModel(reply='{"city": 12}'), "dear": FakeModel(reply='{"city": "Paris"}')})
    schema = {"type": "json_schema", "json_schema": {"name": "place", "schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    h, c = await s.ask(response_format=schema, content="where?")
    assert h["x-switchman-model"] == "dear" and c.choices[0].message.content == '{"city": "Paris"}'
    assert "cheap rejected: JSON does not meet the schema: city: 12 is not of type 'string'" in h["x-switchman-reason"]


async def test_cascade_checks_tool_calls_against_the_tools_schema(stack):
    s = await stack(_cascade(models="[cheap, dear]"), {"cheap": FakeModel(tool_arguments={"city": 3})})
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    h, c = await s.ask(tools=tools)
    assert "cheap rejected: weather arguments: city: 3 is not of type 'string'" in h["x-switchman-reason"]
    assert h["x-switchman-model"] == "dear" and c.choices[0].message.tool_calls[0].function.name == "weather"


async def test_cascade_escalates_on_low_token_confidence(stack):
    s = await stack(_cascade("{logprob: 0.5}", models="[cheap, dear]"), {"cheap": FakeModel(logprob=-2.0)})
    h, _ = await s.ask()
    assert "cheap rejected: confidence 0.14<0.5" in h["x-switchman-reason"] and h["x-switchman-model"] == "dear"
    assert next(r for r in s.fake.requests if r.model == "cheap").json["logprobs"] is True
    s.fake.models["cheap"].logprob = -0.1
    h, _ = await s.ask()
    assert h["x-switchman-model"] == "cheap"


async def test_cascade_judge_grades_and_its_call_counts(stack):
    s = await stack(_cascade("{judge: {model: grader, min: 7}}", models="[cheap, dear]"),
                    {"grader": FakeModel(reply="3")})
    h, _ = await s.ask()
    assert "cheap rejected: judge 3<7" in h["x-switchman-reason"] and h["x-switchman-model"] == "dear"
    graded = next(r for r in s.fake.requests if r.model == "grader").json
    assert "echo: hello there" in graded["messages"][-1]["content"], "the judge sees the answer"
    assert h["x-switchman-attempts"] == "3"  # cheap, its judging, dear
    s.fake.models["grader"].reply = "9"
    h, _ = await s.ask()
    assert h["x-switchman-model"] == "cheap"


async def test_cascade_sends_the_rejected_answer_when_escalation_fails(stack):
    s = await stack(_cascade(models="[cheap, dear]"),
                    {"cheap": FakeModel(reply=REFUSE), "dear": FakeModel(error_status=503)})
    h, c = await s.ask()
    assert h["x-switchman-model"] == "cheap" and c.choices[0].message.content == REFUSE
    assert "escalation failed" in h["x-switchman-reason"]


async def test_hybrid_rules_then_learned_then_cascade(stack, tmp_path):
    _router_file(tmp_path)
    s = await stack("""
  - name: auto
    policy:
      kind: rules
      rules: [{when: {tools: true}, to: dear}]
      default: {route: smart}
  - name: smart
    policy:
      kind: cascade
      models: [cheap, dear]
      start: {kind: learned, router: router.npz, min_quality: 0.7, aliases: {cheap: small-model}}
""", {"cheap": FakeModel(reply=lambda text: REFUSE if "13" in text else "42")})
    h, c = await s.ask(content="compute 12 times 7")
    assert h["x-switchman-model"] == "cheap" and c.choices[0].message.content == "42"
    assert h["x-switchman-reason"].startswith("rules:default->route smart; cascade from cheap (learned:q=")
    h, _ = await s.ask(content="compute 13 times 7")  # the learned pick refuses: the cascade catches it
    assert h["x-switchman-model"] == "dear" and "cheap rejected: refusal" in h["x-switchman-reason"]
    h, _ = await s.ask(content="write a poem about the sea and a cat")
    assert h["x-switchman-model"] == "dear" and "cascade from dear" in h["x-switchman-reason"]
    assert s.calls("cheap") == 2


# -- config errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("routes, where, words", [
    ("""
  - name: auto
    policy: {kind: rules, rules: [{when: {tools: true}, to: nowhere}], default: {to: cheap}}""",
     "routes[0].policy.rules[0].to", "unknown model 'nowhere'"),
    ("""
  - name: a
    policy: {kind: rules, rules: [{when: {tools: true}, route: b}], default: {to: cheap}}
  - name: b
    policy: {kind: rules, rules: [{when: {json: true}, to: cheap}], default: {route: a}}""",
     "routes[0].policy", "back to itself"),
    ("""
  - name: auto
    policy: {kind: rules, rules: [{when: {regex: "(unclosed"}, to: cheap}], default: {to: cheap}}""",
     "routes[0].policy.rules[0].when.regex", "not a regular expression"),
    ("""
  - name: auto
    policy: {kind: cheapest, models: [cheap, mid], min_quality: 0.5, quality: {cheap: 0.4}}""",
     "routes[0].policy.quality", "no expected quality for mid"),
    ("""
  - name: auto
    policy: {kind: cascade, models: [cheap]}""", "routes[0].policy.models", "at least two models"),
    ("""
  - name: auto
    policy: {kind: cascade, models: [cheap, dear], checks: {judge: {model: ghost}}}""",
     "routes[0].policy.checks.judge.model", "unknown model 'ghost'"),
    ("""
  - name: auto
    policy: {kind: learned, models: [cheap], router: missing.npz, min_quality: 0.5}""",
     "routes[0].policy.router", "cannot load router"),
    ("""
  - name: auto
    policy: {kind: learned, models: [cheap], router: r.npz}""", "routes[0].policy", "exactly one of"),
    ("""
  - name: auto
    policy: {kind: cascade, models: [cheap, dear], checks: {agree: -1}}""",
     "routes[0].policy.checks.agree", "must be how many earlier answers must agree"),
    ("""
  - name: auto
    policy: {kind: learned, models: [cheap], router: r.npz, tradeoff: 0.1, task_tag: " "}""",
     "routes[0].policy.task_tag", "must name a request tag"),
    ("""
  - name: auto
    policy: {kind: learned, models: [cheap], router: r.npz, tradeoff: 0.1, task_tag: [a]}""",
     "routes[0].policy.task_tag", "must be str"),
])
def test_policy_config_errors_name_the_key(tmp_path, routes, where, words):
    text = _yaml("http://127.0.0.1:9/v1", "http://127.0.0.1:9", routes)
    path = tmp_path / "switchman.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        configfile.load(str(path), env={})
    assert e.value.key == where and words in e.value.message


@pytest.mark.parametrize("first, last", [("cheap", "mid"), ("mid", "dear")])  # (openai, anthropic) wires and back
async def test_cascade_serves_an_anthropic_client_streaming(stack, first, last):
    import anthropic

    s = await stack(_cascade(models=f"[{first}, {last}]"), {first: FakeModel(reply=REFUSE)})
    async with anthropic.AsyncAnthropic(base_url=s.base, api_key="k", max_retries=0) as c:
        async with c.messages.stream(model="auto", max_tokens=100,
                                     messages=[{"role": "user", "content": "plan a picnic"}]) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
    assert text == "echo: plan a picnic" and final.stop_reason == "end_turn"
    assert s.calls(first) == 1 and s.calls(last) == 1


async def test_a_cost_cap_shortens_a_cascade_to_what_it_can_pay_for(stack):
    # Worst cases at max_tokens 1000: cheap $0.0004, mid $0.004, dear $0.04; a cascade may pay
    # every stage, so under a $0.01 cap dear goes and mid's answer is final (unchecked).
    s = await stack(_cascade(), {"cheap": FakeModel(reply=REFUSE), "mid": FakeModel(reply=REFUSE)}, ledger=True)
    h, c = await s.ask(max_tokens=1000, headers={"x-switchman-max-cost-usd": "0.01"})
    assert h["x-switchman-model"] == "mid" and s.calls("dear") == 0
    assert "cheap rejected: refusal" in h["x-switchman-reason"]
    h, _ = await s.ask(max_tokens=1000)
    assert h["x-switchman-model"] == "dear", "without the cap the cascade goes all the way"


def _scorer_file(tmp_path) -> str:
    """An answer scorer trained on answers where a hedged guess ('maybe ...') was wrong and a
    plain statement ('the answer is ...') right."""
    from switchman.routing.training import train_scorer

    rng = np.random.default_rng(1)
    prompts, q, responses = [], [], []
    for i in range(200):
        a, b = rng.integers(100), rng.integers(100)
        prompts.append(Prompt(f"p{i}", MATH[i % 4].format(a, b), "t", None))
        hedged = i % 2 == 0
        responses.append([f"maybe {a} or so" if hedged else f"the answer is {a + b}", f"the answer is {a + b}"])
        q.append([0.0 if hedged else 1.0, 1.0])
    quality = np.array(q)
    cost = np.tile([0.001, 0.01], (len(prompts), 1))
    nan = np.full_like(quality, np.nan)
    table = OutcomeTable(prompts, ["cheap", "dear"], quality, cost, nan, nan, nan, responses, Dropped())
    path = tmp_path / "scorer.npz"
    train_scorer(table, cost).save(path)
    return str(path)


async def test_cascade_answer_scorer_escalates_a_doubtful_answer(stack, tmp_path):
    _scorer_file(tmp_path)
    s = await stack(_cascade("{scorer: {path: scorer.npz, min: 0.5}}", models="[cheap, dear]"),
                    {"cheap": FakeModel(reply="maybe 12 or so")})
    h, _ = await s.ask(content="what is 12 plus 30")
    assert h["x-switchman-model"] == "dear" and "cheap rejected: scorer 0." in h["x-switchman-reason"]
    s.fake.models["cheap"].reply = "the answer is 42"
    h, _ = await s.ask(content="what is 12 plus 30")
    assert h["x-switchman-model"] == "cheap" and "cheap passed checks" in h["x-switchman-reason"]


async def test_a_rejected_answer_beats_the_routes_fixed_degraded_reply(stack):
    s = await stack(_cascade(models="[cheap, dear]").rstrip() + "\n    degrade: {reply: \"Sorry, we are busy.\"}\n",
                    {"cheap": FakeModel(reply=REFUSE), "dear": FakeModel(error_status=503)})
    h, c = await s.ask()
    assert c.choices[0].message.content == REFUSE and h["x-switchman-model"] == "cheap"
    assert "escalation failed (every candidate failed)" in h["x-switchman-reason"]


async def test_cascade_escalates_an_answer_with_a_wrong_calculation(stack):
    s = await stack(_cascade("{arithmetic: true}", models="[cheap, dear]"),
                    {"cheap": FakeModel(reply="She needs 3 * 20 = 70 cups.\n#### 70"),
                     "dear": FakeModel(reply="She needs 3 * 20 = 60 cups.\n#### 60")})
    h, c = await s.ask(content="how many cups?")
    assert h["x-switchman-model"] == "dear" and c.choices[0].message.content.endswith("#### 60")
    assert "cheap rejected: wrong calculation 3 * 20=70" in h["x-switchman-reason"]
    s.fake.models["cheap"].reply = "She needs 3 * 20 = 60 cups."
    h, _ = await s.ask(content="how many cups?")
    assert h["x-switchman-model"] == "cheap", "a right calculation is accepted"


async def test_cascade_pays_for_the_dear_model_only_when_two_cheaper_answers_disagree(stack):
    s = await stack(_cascade("{agree: 1}"),
                    {"cheap": FakeModel(reply="B"), "mid": FakeModel(reply="(B) because the text says so."),
                     "dear": FakeModel(reply="C")})
    h, c = await s.ask(content="Which option? A, B or C")
    assert h["x-switchman-model"] == "mid" and c.choices[0].message.content.startswith("(B)")
    assert "cheap rejected: no earlier answer to agree with" in h["x-switchman-reason"]
    assert (s.calls("cheap"), s.calls("mid"), s.calls("dear")) == (1, 1, 0)
    s.fake.models["mid"].reply = "The final answer is A."
    h, c = await s.ask(content="Which option? A, B or C")
    assert h["x-switchman-model"] == "dear" and c.choices[0].message.content == "C"
    assert "mid rejected: agreed by 0 of 1 earlier answers" in h["x-switchman-reason"]
    # numbers are compared as numbers: "#### 1,540" and "the answer is 1540" agree
    s.fake.models["cheap"].reply, s.fake.models["mid"].reply = "3 x 40 = 120, so #### 1,540", "So the answer is 1540."
    h, _ = await s.ask(content="How many?")
    assert h["x-switchman-model"] == "mid"


async def test_a_checked_cascade_stage_does_not_hedge_to_the_dearer_model(stack):
    routes = """
  - name: auto
    policy: {kind: cascade, models: [cheap, dear]}
    hedge: {after: 0.02, max: 2}
"""
    s = await stack(routes, {"cheap": FakeModel(latency=0.3)})
    h, c = await s.ask(content="a slow cheap answer")
    assert h["x-switchman-model"] == "cheap" and "cheap passed checks" in h["x-switchman-reason"]
    assert s.calls("dear") == 0, "no hedge launched the next stage before the cheap answer was checked"


def test_a_policy_whose_models_are_all_aliased_passes_the_check(tmp_path):
    """Every configured name renamed through ``aliases``: the check looks the alias keys up,
    not only the names the router itself uses (it used to say "knows none of the policy's models")."""
    from switchman import configfile
    from switchman.errors import ConfigError

    _router_file(tmp_path)
    base = """\
providers:
  oa: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: k}
models:
  - {name: cheap, provider: oa, model: a, price: {input: 1, output: 1}}
  - {name: pricey, provider: oa, model: b, price: {input: 9, output: 9}}
routes:
  - name: auto
    policy: {kind: learned, router: router.npz, models: [cheap, pricey], min_quality: 0.7, ALIASES}
"""
    path = tmp_path / "s.yaml"
    path.write_text(base.replace("ALIASES", "aliases: {cheap: small-model, pricey: dear}"))
    cfg = configfile.load(str(path))
    assert cfg.routes["auto"].models == ("cheap", "pricey")
    path.write_text(base.replace("ALIASES", "aliases: {cheap: tiny, pricey: huge}"))
    with pytest.raises(ConfigError, match="does not know 'tiny'|knows none"):
        configfile.load(str(path))
