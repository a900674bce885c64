"""The replay upstream behind the real gateway: a slice of recorded outcomes sent through the
server (real HTTP, the OpenAI SDK) gets the same decisions and the same cost as ``switchman eval``'s
replay of the same router, for the ``learned`` policy and for the ``bandit`` started from it."""

from __future__ import annotations

import asyncio
import contextlib
import random

import numpy as np
import openai
import pytest

from switchman import configfile
from switchman.app import App
from switchman.eval.bandit import BanditStrategy
from switchman.eval.replay import make_folds
from switchman.eval.strategies import LearnedStrategy
from switchman.gateway import Gateway
from switchman.http.server import HttpServer
from switchman.metering import Metering
from switchman.outcomes import Dropped, OutcomeTable, Prompt, resolve_costs
from switchman.routing.training import TrainParams, train_router
from switchman.testing.replay import ReplayUpstream

MODELS = ["small", "large"]
WORDS = {"math": "compute add multiply divide number sum", "poem": "write verse sonnet rhyme stanza ode"}


def _table(n: int = 240) -> OutcomeTable:
    """Two tasks; 'small' right on most math prompts and few poems, 'large' on nearly all; costs
    differ per prompt (long prompts cost more)."""
    rng = np.random.default_rng(7)
    prompts, q, c, resp = [], [], [], []
    for i in range(n):
        task = "math" if i % 2 else "poem"
        words = rng.choice(WORDS[task].split(), size=int(rng.integers(3, 12)))
        prompts.append(Prompt(f"p{i}", f"{i}: " + " ".join(words), task, "test" if i % 5 == 0 else "train"))
        small_ok = rng.random() < (0.8 if task == "math" else 0.2)
        q.append([float(small_ok), float(rng.random() < 0.95)])
        c.append([0.0001 * len(words), 0.002 * len(words) + 0.001])
        resp.append([f"small says {i}", f"large says {i}"])
    nan = np.full((n, 2), np.nan)
    return OutcomeTable(prompts, MODELS, np.array(q), np.array(c), nan, nan, nan, resp, Dropped())


@pytest.fixture
async def served(tmp_path):
    table = _table()
    cost, unit, _ = resolve_costs(table)
    (fold,), _ = make_folds(table, cost, unit)
    router = train_router(table, cost, cost_unit=unit, rows=fold.train, params=TrainParams(c=3.0))
    router.save(tmp_path / "router.npz")
    up = ReplayUpstream(table, cost, rows=fold.test)
    await up.start()
    lam = 0.3
    dearest = float(router.cost_per_call.max())
    cfg = f"""
providers:
  replay: {{kind: openai, base_url: "{up.url('openai')}", api_key: sk-replay}}
models:
{up.models_yaml('replay')}
routes:
  - {{name: learned, policy: {{kind: learned, router: router.npz, models: [small, large], tradeoff: {lam}}}}}
  - {{name: bandit, policy: {{kind: bandit, router: router.npz, models: [small, large], tradeoff: {lam / dearest!r},
                           explore: 0, prior: 50, context_tag: task, seed: 17}}}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
"""
    (tmp_path / "s.yaml").write_text(cfg)
    async with _gateway(tmp_path / "s.yaml", up) as client:
        yield table, cost, fold, router, lam, client, up


@contextlib.asynccontextmanager
async def _gateway(config, up: ReplayUpstream):
    """The gateway of ``config`` on loopback, in this process, and an OpenAI client of it; on the
    way out everything stops, the replay upstream ``up`` too."""
    gw = Gateway(configfile.load(config))
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    port = await server.start("127.0.0.1", 0)
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
    try:
        yield client
    finally:
        await client.close()
        await server.stop(grace=0.2)
        await meter.close()
        await gw.close()
        await up.stop(grace=0.1)


async def _ask(client, route: str, p: Prompt) -> tuple[str, float, str, str]:
    raw = await client.chat.completions.with_raw_response.create(
        model=route, messages=[{"role": "user", "content": p.text}], extra_headers={"x-switchman-tags": f"task={p.task}"})
    r = raw.parse()
    h = raw.headers
    return h["x-switchman-model"], float(h["x-switchman-cost-usd"]), r.choices[0].message.content, h["x-switchman-request-id"]


async def test_learned_through_the_server_decides_and_costs_as_eval(served):
    table, cost, fold, router, lam, client, up = served
    offline = LearnedStrategy("learned", "tradeoff", router=router, grid=(lam,)).run(fold)[0].answered
    assert 0 < (offline == 0).sum() < len(offline)  # the point routes some prompts each way
    live, billed = [], 0.0
    for r, i in enumerate(fold.test):
        model, usd, text, _ = await _ask(client, "learned", table.prompts[i])
        live.append(table.models.index(model))
        billed += usd
        assert text == table.responses[i][live[-1]]  # the recorded answer
    assert live == offline.tolist()
    recorded = float(cost[fold.test, offline].sum())
    assert billed == pytest.approx(recorded, rel=1e-6)


async def test_bandit_through_the_server_with_feedback_follows_the_eval_stream(served):
    table, cost, fold, router, lam, client, up = served
    strat = BanditStrategy("bandit", True, lambdas=(lam,), predictions=lambda f: (router, *router.estimate_many(
        [table.prompts[i].text for i in f.test], [table.prompts[i].task for i in f.test])))
    offline = strat.run(fold)[0].answered
    order = list(range(len(fold.test)))
    random.Random(fold.seed * 7919 + 1).shuffle(order)
    rng = random.Random(fold.seed * 7919 + 2)
    live = [0] * len(fold.test)
    http = client._client  # the SDK's own httpx client, for the feedback endpoint
    for pos in order:
        i = fold.test[pos]
        model, _, _, rid = await _ask(client, "bandit", table.prompts[i])
        live[pos] = table.models.index(model)
        if rng.random() < 0.2:
            for _ in range(100):  # the ledger settles just after the answer
                r = await http.post(str(client.base_url) + "feedback",
                                    json={"request_id": rid, "score": float(table.quality[i, live[pos]])})
                if r.status_code != 404:
                    break
                await asyncio.sleep(0.005)
            assert r.status_code < 300, r.text
    assert live == offline.tolist()


async def test_a_prompt_the_data_does_not_hold_is_a_clear_400(served):
    *_, up = served
    c = openai.AsyncOpenAI(base_url=up.url("openai"), api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="not in the replayed outcome data"):
        await c.chat.completions.create(model="small", messages=[{"role": "user", "content": "never asked"}])
    await c.close()


async def test_with_list_prices_cheapest_ranks_models_as_the_data_does_and_the_bill_stays_the_recorded_cost(tmp_path):
    """Priced at one shared unit, ``cheapest`` cannot tell the models apart; with ``list_prices``
    it picks the model the data says is cheaper, and the ledger still bills each answer's recorded
    cost (answers report no output tokens, so the list price never bills)."""
    from switchman.testing.replay import list_prices

    table = _table()
    cost, _, _ = resolve_costs(table)
    rows = table.split_indices("test")
    prices = list_prices(table, cost, rows)
    assert prices["small"] < prices["large"]
    up = ReplayUpstream(table, cost, rows=rows, output_price=prices)
    await up.start()
    (tmp_path / "s.yaml").write_text(f"""
providers:
  replay: {{kind: openai, base_url: "{up.url('openai')}", api_key: sk-replay}}
models:
{up.models_yaml('replay')}
routes:
  - {{name: cheap, policy: {{kind: cheapest, models: [large, small], min_quality: 0.8, quality: {{small: 0.85, large: 0.95}}}}}}
  - {{name: good, policy: {{kind: cheapest, models: [large, small], min_quality: 0.9, quality: {{small: 0.85, large: 0.95}}}}}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
""")
    async with _gateway(tmp_path / "s.yaml", up) as client:
        for i in rows[:6]:
            for route, want in (("cheap", "small"), ("good", "large")):
                model, usd, text, _ = await _ask(client, route, table.prompts[i])
                j = MODELS.index(want)
                assert model == want and text == table.responses[i][j]
                assert usd == pytest.approx(cost[i, j], rel=1e-6)
