"""prefer: headroom through ``switchman serve``: a model that has used 80% of its requests per
minute goes behind the others before its limit refuses anything, with the reason in the header."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from switchman.testing.fake_upstream import FakeModel

from telemetry.serving import serve, stop

MODELS = """\
  - {name: lead, provider: fake, model: lead, price: {input: 1, output: 1}, limits: {rpm: 10}}
  - {name: spare, provider: fake, model: spare, price: {input: 2, output: 2}}
"""


@pytest.mark.parametrize("prefer", [True, False])
async def test_a_model_near_its_limit_goes_last(tmp_path, prefer):
    extra = ", prefer: headroom" if prefer else ""
    routes = f"  - {{name: r, policy: {{kind: first, models: [lead, spare]{extra}}}}}\n"
    s = await serve(tmp_path, extra_models=MODELS, routes=routes, models={"lead": FakeModel(), "spare": FakeModel()})
    try:
        # rate windows are the server's wall-clock minutes: keep the 12 requests inside one
        if time.time() % 60 > 55:
            await asyncio.sleep(61 - time.time() % 60)
        got = []
        async with aiohttp.ClientSession() as http:
            for i in range(12):
                async with http.post(s.base + "/v1/chat/completions", headers=s.admin(), json={
                        "model": "r", "messages": [{"role": "user", "content": f"q{i}"}]}) as r:
                    assert r.status == 200
                    got.append((r.headers["x-switchman-model"], r.headers["x-switchman-reason"]))
    finally:
        await stop(s)
    models = [m for m, _ in got]
    if prefer:  # 8 of 10 used: from then on the spare first, and lead keeps its last two
        assert models[:8] == ["lead"] * 8 and models[8:] == ["spare"] * 4
        assert "headroom: lead at 80% of its limit, so spare first" in got[8][1]
    else:  # lead until its limit refuses, then the spare as a fallback
        assert models[:10] == ["lead"] * 10 and models[10:] == ["spare"] * 2


def test_prefer_must_be_headroom():
    from switchman import configfile
    from switchman.errors import ConfigError

    cfg = """\
providers:
  oa: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: k}
models:
  - {name: a, provider: oa, model: a, price: {input: 1, output: 1}}
routes:
  - {name: r, policy: {kind: first, models: [a], prefer: speed}}
"""
    with pytest.raises(ConfigError, match=r"routes\[0\].policy.prefer.*must be headroom"):
        configfile.loads(cfg, file="s.yaml", env={})
