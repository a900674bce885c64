"""A bandit that learns per prompt cluster (``context: cluster``): the router file's k-means
centroids (``switchman train --clusters K``) put each prompt in a cluster, the request carries it
as its ``cluster`` tag, and feedback teaches that cluster's posterior only."""

from __future__ import annotations

from collections import Counter

import aiohttp
import numpy as np
import pytest

from switchman import configfile
from switchman.errors import ConfigError
from switchman.outcomes import Dropped, OutcomeTable, Prompt
from switchman.routing.learned import Router

pytest.importorskip("sklearn")
from switchman.routing.training import TrainParams, train_router  # noqa: E402

MATH = ["what is {} plus {}", "compute {} times {}", "solve {} minus {} for me", "divide {} by {}"]
POEM = ["write a poem about {} and {}", "a sonnet on {} with {}", "compose verses about {} {}", "a haiku of {} {}"]
WORDS = ["cats", "the sea", "rain", "autumn", "dogs", "the moon", "bread", "trains"]


def _prompt(kind: int, i: int) -> str:
    rng = np.random.default_rng(i)
    if kind == 0:
        return MATH[i % 4].format(rng.integers(100), rng.integers(100))
    return POEM[i % 4].format(WORDS[rng.integers(8)], WORDS[rng.integers(8)])


def _table(n: int = 160) -> tuple[OutcomeTable, np.ndarray]:
    """Both models score 0.5 on every prompt: the router learns nothing to tell them apart."""
    prompts = [Prompt(f"p{i}", _prompt(i % 2, i), None, None) for i in range(n)]
    quality = np.full((n, 2), 0.5)
    cost = np.tile([0.001, 0.001], (n, 1))
    nan = np.full_like(quality, np.nan)
    return OutcomeTable(prompts, ["a", "b"], quality, cost, nan, nan, nan, None, Dropped()), cost


@pytest.fixture(scope="module")
def router_file(tmp_path_factory) -> str:
    t, cost = _table()
    path = tmp_path_factory.mktemp("router") / "router.npz"
    train_router(t, cost, params=TrainParams(clusters=2)).save(path)
    return str(path)


def test_the_clusters_separate_kinds_of_prompt_and_survive_the_file(router_file, tmp_path):
    r = Router.load(router_file)
    assert r.clusters == 2
    maths = Counter(r.estimate_cluster(_prompt(0, i))[2] for i in range(1000, 1040))
    poems = Counter(r.estimate_cluster(_prompt(1, i))[2] for i in range(1000, 1040))
    (m, nm), = maths.most_common(1)
    (p, np_), = poems.most_common(1)
    assert m != p and nm >= 38 and np_ >= 38, (maths, poems)
    q, c = r.estimate(_prompt(0, 3))  # the quality and cost estimates are the same with or without clusters
    q2, c2, _ = r.estimate_cluster(_prompt(0, 3))
    assert np.array_equal(q, q2) and np.array_equal(c, c2)
    t, cost = _table()
    plain = tmp_path / "plain.npz"
    train_router(t, cost).save(plain)
    assert Router.load(plain).clusters == 0 and Router.load(plain).estimate_cluster("hi")[2] is None


async def test_feedback_teaches_each_cluster_its_own_model_over_http(router_file, tmp_path):
    from telemetry.serving import serve, stop

    s = await serve(tmp_path, extra_models="""\
  - {name: a, provider: fake, model: echo, price: {input: 1, output: 2}}
  - {name: b, provider: fake, model: echo, price: {input: 1, output: 2}}
""", routes=f"  - {{name: per-kind, policy: {{kind: bandit, models: [a, b], router: '{router_file}', "
            f"context: cluster, explore: 0.05, seed: 7}}}}\n")
    try:
        late: dict[int, Counter] = {0: Counter(), 1: Counter()}
        reasons = []
        async with aiohttp.ClientSession() as http:
            for i in range(200):
                kind = i % 2
                async with http.post(s.base + "/v1/chat/completions", headers=s.admin(), json={
                        "model": "per-kind", "messages": [{"role": "user", "content": _prompt(kind, i)}]}) as r:
                    assert r.status == 200
                    model, rid = r.headers["x-switchman-model"], r.headers["x-switchman-request-id"]
                    reasons.append(r.headers["x-switchman-reason"])
                if i >= 140:
                    late[kind][model] += 1
                good = (kind == 0) == (model == "a")  # a answers maths well, b poems
                async with http.post(s.base + "/v1/feedback", headers=s.admin(),
                                     json={"request_id": rid, "score": 1.0 if good else 0.0}) as r:
                    assert r.status == 201, await r.text()
            async with http.get(s.base + f"/admin/requests/{rid}", headers=s.admin()) as r:
                row = await r.json()
        assert late[0]["a"] >= 25 and late[1]["b"] >= 25, late  # of 30 each
        assert all("[cluster=" in x for x in reasons)
        assert row["tags"]["cluster"] in ("0", "1") and "[cluster=" + row["tags"]["cluster"] + "]" in row["reason"]
    finally:
        await stop(s)


@pytest.mark.parametrize("extra,key,words", [
    ("context: kind", "context", "must be cluster"),
    ("context: cluster, context_tag: task", "context", "not both"),
    ("context: cluster", "context", "needs router"),
])
def test_config_errors(extra, key, words):
    text = f"""providers: {{p: {{kind: openai, api_key: k}}}}
models: [{{name: a, provider: p, model: gpt-4o-mini}}, {{name: b, provider: p, model: gpt-4o}}]
routes: [{{name: r, policy: {{kind: bandit, models: [a, b], {extra}}}}}]
"""
    with pytest.raises(ConfigError) as e:
        configfile.loads(text, file="s.yaml", env={})
    assert key in str(e.value) and words in str(e.value)


def test_a_router_without_clusters_is_refused_for_context_cluster(tmp_path):
    t, cost = _table()
    plain = tmp_path / "plain.npz"
    train_router(t, cost).save(plain)
    text = f"""providers: {{p: {{kind: openai, api_key: k}}}}
models: [{{name: a, provider: p, model: gpt-4o-mini}}, {{name: b, provider: p, model: gpt-4o}}]
routes: [{{name: r, policy: {{kind: bandit, models: [a, b], router: '{plain}', context: cluster}}}}]
"""
    with pytest.raises(ConfigError) as e:
        configfile.loads(text, file="s.yaml", env={})
    assert "context" in str(e.value) and "--clusters" in str(e.value)


async def test_a_cascade_teaches_its_cluster_bandit_per_cluster(router_file, tmp_path):
    # "a" refuses poems and answers maths; the cascade's refusal check tells the bandit it starts by,
    # per prompt cluster: poems come to start at "b", maths stay at "a".
    from switchman.testing.fake_upstream import FakeModel
    from telemetry.serving import serve, stop

    def a_reply(text: str) -> str:
        return "I'm sorry, but I can't help with that." if text.startswith(tuple(p.split()[0] for p in POEM)) \
            else f"echo: {text}"

    s = await serve(tmp_path, models={"a-model": FakeModel(reply=a_reply)}, extra_models="""\
  - {name: a, provider: fake, model: a-model, price: {input: 1, output: 2}}
  - {name: b, provider: fake, model: echo, price: {input: 10, output: 20}}
""", routes=f"  - {{name: casc, policy: {{kind: cascade, models: [a, b], start: {{kind: bandit, models: [a, b], "
            f"router: '{router_file}', context: cluster, explore: 0.0, seed: 5}}}}}}\n")
    try:
        late: dict[int, Counter] = {0: Counter(), 1: Counter()}
        async with aiohttp.ClientSession() as http:
            for i in range(160):
                kind = i % 2
                async with http.post(s.base + "/v1/chat/completions", headers=s.admin(), json={
                        "model": "casc", "messages": [{"role": "user", "content": _prompt(kind, i)}]}) as r:
                    assert r.status == 200
                    reason = r.headers["x-switchman-reason"]
                if i >= 120:
                    late[kind][reason.split(" (")[0]] += 1  # "cascade from a" / "cascade from b"
        assert late[0]["cascade from a"] >= 18 and late[1]["cascade from b"] >= 18, late  # of 20 each
    finally:
        await stop(s)
