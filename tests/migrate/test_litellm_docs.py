"""``switchman import-litellm`` on three configs written from LiteLLM's documentation (the proxy's
quick start, its fallbacks / retries / cooldowns page, its load-balancing page): each becomes a
config that ``switchman check`` accepts and the gateway loads, with what a LiteLLM user set kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from switchman.configfile import loads

DOCS = Path(__file__).parent / "litellm_docs"
ENV = {"OPENAI_API_KEY": "sk-o", "AZURE_API_KEY": "az", "AZURE_API_KEY_EU": "az-eu", "AZURE_API_KEY_CA": "az-ca",
       "ANTHROPIC_API_KEY": "sk-a", "LITELLM_MASTER_KEY": "sk-master", "REDIS_HOST": "127.0.0.1",
       "REDIS_PASSWORD": "pw", "DATABASE_URL": "postgresql://127.0.0.1:5432/test"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "switchman.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **ENV}, timeout=60)


@pytest.fixture(scope="module", params=["simple", "fallbacks", "balanced"])
def imported(request, tmp_path_factory):
    out = run("import-litellm", str(DOCS / f"{request.param}.yaml"))
    assert out.returncode == 0, out.stderr
    path = tmp_path_factory.mktemp(request.param) / "switchman.yaml"
    path.write_text(out.stdout)
    return request.param, path, yaml.safe_load(out.stdout), out.stderr.splitlines()


def test_each_passes_check_and_loads(imported):
    name, path, _, notes = imported
    checked = run("check", "--config", str(path))
    assert checked.returncode == 0, checked.stderr
    cfg = loads(path.read_text(), file=str(path), env=ENV)
    assert cfg.models and cfg.auth is not None
    assert all(n.startswith("# not mapped: ") for n in notes)


def test_the_settings_a_litellm_user_set_are_kept(imported):
    name, _, cfg, notes = imported
    models = {m["name"]: m for m in cfg["models"]}
    if name == "simple":
        assert set(models) == {"gpt-3.5-turbo", "claude-3-sonnet", "vllm-models"}
        assert cfg["providers"][models["vllm-models"]["provider"]]["base_url"] == "http://0.0.0.0:4000/v1"
        assert models["vllm-models"]["limits"] == {"rpm": 1440}
        assert cfg["auth"] == {"admin_key": "sk-1234"}
        assert any("literal key" in n for n in notes)
    elif name == "fallbacks":
        # fallbacks from both sections (litellm_settings' too, which the proxy hands its router)
        assert models["gpt-3.5-turbo"]["fallbacks"] == ["gpt-4", "gpt-3.5-turbo-16k"]
        assert models["gpt-4"]["fallbacks"] == ["claude-sonnet"]
        assert cfg["retry"] == {"attempts": 4} and cfg["deadline"] == 10.0
        assert cfg["breaker"] == {"failures": 3, "cooldown": 30.0}
        assert models["gpt-4"]["limits"] == {"rpm": 6}
        assert any("retry_policy" in n for n in notes)
    else:
        (gpt, llama) = cfg["routes"]
        assert gpt == {"name": "gpt-4o", "policy": {"kind": "least-busy", "models": ["gpt-4o-1", "gpt-4o-2", "gpt-4o-3"]},
                       "fallbacks": ["llama-1", "llama-2"]}
        assert llama["policy"]["models"] == ["llama-1", "llama-2"]
        assert cfg["state"] == {"backend": "redis", "url": "redis://:${REDIS_PASSWORD}@${REDIS_HOST}:6379/0"}
        assert cfg["ledger"] == {"url": "${DATABASE_URL}"}
        assert models["llama-1"]["price"] == {"input": 0.1, "output": 0.2}
        assert "price" not in models["gpt-4o-3"]  # gpt-4o is in the catalog: its price applies at load
        assert not any("redis" in n for n in notes)
