"""The ``switchman`` command as a user runs it: real processes, real sockets."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest


from conftest import free_port
from switchman.gateway import Gateway
from switchman import configfile
from switchman.testing.fake_upstream import FakeModel, FakeUpstream

KEY = "sk-provider-never-in-logs-42"


def run(*args, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", "switchman.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def write_config(tmp_path, fake_port: int, extra: str = "") -> str:
    p = tmp_path / "switchman.yaml"
    p.write_text(f"""
providers:
  oa: {{kind: openai, base_url: "http://127.0.0.1:{fake_port}/v1", api_key: "${{TEST_KEY}}"}}
  dead: {{kind: openai, base_url: "http://127.0.0.1:{free_port()}/v1", api_key: "${{TEST_KEY}}"}}
models:
  - {{name: gpt-4o-mini, provider: oa}}
  - {{name: broken, provider: dead, model: gpt-4o-mini}}
routes:
  - name: auto
    policy: {{kind: first, models: [broken, gpt-4o-mini]}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
{extra}
""")
    return str(p)


def test_check_prints_resolved_config_and_exit_codes(tmp_path):
    path = write_config(tmp_path, 1)
    r = run("check", "--config", path, env={"TEST_KEY": KEY})
    assert r.returncode == 0, r.stderr
    assert "gpt-4o-mini" in r.stdout and "0.15" in r.stdout and "auto" in r.stdout and "catalog" in r.stdout
    assert KEY not in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {name: a, provider: p, colour: red}\n")
    r = run("check", "--config", str(bad))
    assert r.returncode == 2 and "bad.yaml:2" in r.stderr and "colour" in r.stderr
    r = run("check", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "cannot read config" in r.stderr
    r = run("frobnicate")
    assert r.returncode == 2


def _wait_ready(port: int, proc, timeout=20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    raise AssertionError("gateway did not become ready")


def _chat(port: int, model: str, key: str | None = None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_serve_with_two_workers_answers_and_never_logs_keys(tmp_path):
    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, "-m", "switchman.testing.fake_upstream", "--port", str(fake_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = free_port()
    gw = None
    try:
        assert fake.stdout.readline().startswith("ready")
        path = write_config(tmp_path, fake_port)
        gw = subprocess.Popen([sys.executable, "-m", "switchman.cli", "serve", "--config", path, "--port", str(port),
                               "--workers", "2", "--log-level", "DEBUG"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TEST_KEY": KEY})
        _wait_ready(port, gw)
        for _ in range(20):
            status, headers, body = _chat(port, "gpt-4o-mini")
            assert status == 200 and body["choices"][0]["message"]["content"] == "echo: hi"
        status, headers, body = _chat(port, "auto")  # "broken" is unreachable: falls through
        assert status == 200 and headers["x-switchman-model"] == "gpt-4o-mini"
        assert "broken:connect" in headers["x-switchman-reason"]
        status, _, body = _chat(port, "nope")
        assert status == 404
        children = subprocess.run(["pgrep", "-P", str(gw.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2, "two worker processes"
    finally:
        if gw is not None:
            gw.terminate()
            out, err = gw.communicate(timeout=20)
            assert gw.returncode == 0, err
            assert "serving" in out
            assert KEY not in out + err
        fake.terminate()
        fake.communicate(timeout=10)


def test_serve_refuses_public_bind_without_a_key(tmp_path):
    path = write_config(tmp_path, 1)
    r = run("serve", "--config", path, "--host", "0.0.0.0", "--port", str(free_port()), env={"TEST_KEY": "k"})
    assert r.returncode == 2 and "refusing to listen on 0.0.0.0" in r.stderr


def test_demo_shows_routing_fallback_and_cost():
    r = run("demo", "--exit", "--port", "0", timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for name in ("gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-pro"):
        assert name in out
    assert "fallback to" in out and "failed flaky-llama" in out
    assert "cost USD" in out
    assert "rules:proofs->gemini-2.5-pro" in out
    assert "gpt-4o-mini rejected: refusal; claude-haiku-4-5 passed checks" in out, "the cascade catches a refusal"


async def test_library_form_without_a_server():
    fake = FakeUpstream({"gpt-4o-mini": FakeModel()})
    port = await fake.start()
    try:
        cfg = configfile.loads(f"""
providers: {{oa: {{kind: openai, base_url: "http://127.0.0.1:{port}/v1"}}}}
models: [{{name: gpt-4o-mini, provider: oa}}]
""", env={})
        gw = Gateway.from_config(cfg)
        reply = await gw.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "in process"}])
        assert reply.response.text() == "echo: in process"
        assert reply.outcome.model.name == "gpt-4o-mini" and reply.cost() > 0
        reply = await gw.chat(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "streamed"}])
        from switchman.types import ResponseBuilder

        b = ResponseBuilder()
        async for ev in reply.events:
            b.add(ev)
        assert b.build().text() == "echo: streamed"
        await gw.close()
    finally:
        await fake.stop()


def test_a_missing_extra_is_one_line_with_the_install_hint(tmp_path):
    cfg = tmp_path / "r.yaml"
    cfg.write_text('providers:\n  p: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: x}\n'
                   "models:\n  - {name: m, provider: p, price: {input: 1, output: 1}}\n"
                   'state: {backend: redis, url: "redis://127.0.0.1:6379/9"}\n')
    code = ("import sys; sys.modules['redis'] = None; sys.modules['redis.asyncio'] = None\n"
            "from switchman.cli import main\n"
            f"sys.exit(main(['serve', '--config', {str(cfg)!r}, '--port', '0']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pip install 'switchman[redis]'" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_train_into_a_missing_directory_is_one_line_not_a_traceback(tmp_path):
    data = Path(__file__).parents[2] / "shared" / "data" / "routellm-mmlu-gsm8k" / "outcomes.jsonl.gz"
    if not data.exists():
        pytest.skip("the shared outcome data is not here")
    r = run("train", "--data", str(data), "--out", str(tmp_path / "no" / "such" / "dir" / "router.npz"))
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr
    assert "no/such/dir" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_check_shows_experiments_headroom_and_caching(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("""\
providers:
  oa: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: k}
models:
  - {name: a, provider: oa, model: gpt-4o-mini}
  - {name: b, provider: oa, model: gpt-4o}
routes:
  - {name: chat, policy: {kind: experiment, arms: {control: a, candidate: b}, ramp: [5, 50, 100]}}
  - {name: r2, policy: {kind: first, models: [a, b], prefer: headroom}, cache: {enabled: true, prompt_ttl: 1h}}
""")
    r = run("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "arms: control=a, candidate=b; ramp 5% -> 50% -> 100%" in r.stdout
    assert "prefer: headroom" in r.stdout and "prompt cache ttl 1h" in r.stdout


def test_check_shows_the_bandits_settings_and_which_api_a_model_is_reached_by(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("""\
providers:
  oa: {kind: openai, api_key: k}
models:
  - {name: a, provider: oa, model: gpt-4o-mini}
  - {name: pro, provider: oa, model: gpt-5.5-pro}
routes:
  - {name: b, policy: {kind: bandit, models: [a, pro], quality: {a: 0.7, pro: 0.9}, tradeoff: 20, seed: 7,
                       context_tag: task}}
""")
    r = run("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "bandit: tradeoff 20, explore 0.05, prior weight 10 (quality a=0.7, pro=0.9); learns per tag 'task'; " \
           "seed 7" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith("pro "))
    assert line.endswith("via the Responses API")
    assert not next(x for x in r.stdout.splitlines() if x.strip().startswith("a ")).endswith("Responses API")
