"""``switchman import-litellm``: a LiteLLM proxy config with load-balanced deployments, fallbacks,
costs, limits, router and general settings becomes a switchman config that ``switchman check``
accepts, every setting left behind is listed with why, and a file that is not one fails in a line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).parent
ENV = {**os.environ, "OPENAI_API_KEY": "sk-o", "AZURE_API_KEY": "az", "ANTHROPIC_API_KEY": "sk-a",
       "LITELLM_MASTER_KEY": "sk-master", "DATABASE_URL": "postgresql://127.0.0.1:5432/test"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "switchman.cli", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=60)


def test_a_litellm_config_becomes_one_that_passes_check(tmp_path):
    out = run("import-litellm", str(HERE / "litellm_config.yaml"))
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    (tmp_path / "switchman.yaml").write_text(out.stdout)
    checked = run("check", "--config", str(tmp_path / "switchman.yaml"))
    assert checked.returncode == 0, checked.stderr
    models = {m["name"]: m for m in cfg["models"]}
    # two deployments of gpt-4o: a route over both, weighted by rpm, usage-aware
    (route,) = cfg["routes"]
    assert route["name"] == "gpt-4o" and route["policy"]["models"] == {"gpt-4o-1": 600.0, "gpt-4o-2": 300.0}
    assert route["policy"]["prefer"] == "headroom" and route["fallbacks"] == ["claude"]
    assert cfg["providers"]["azure"] == {"kind": "azure", "base_url": "https://my-eu.openai.azure.com",
                                         "api_key": "${AZURE_API_KEY}", "api_version": "2024-10-21"}
    assert models["claude"]["price"]["input"] == 3.0 and models["claude"]["price"]["output"] == 15.0
    assert models["claude"]["price"]["cached_input"] == 0.3  # the catalog's, LiteLLM has none
    assert models["claude"]["timeout"] == {"total": 120.0} and models["claude"]["fallbacks"] == ["local"]
    assert models["gpt-4o-1"]["limits"] == {"rpm": 600, "tpm": 200000}
    assert models["local"]["fallbacks"] == ["gpt-4o-1", "gpt-4o-2"]  # context-window fallbacks too
    assert cfg["providers"]["ollama"]["base_url"] == "http://127.0.0.1:11434/v1"
    assert cfg["retry"] == {"attempts": 3} and cfg["breaker"] == {"failures": 3, "cooldown": 30.0}
    assert cfg["auth"] == {"admin_key": "${LITELLM_MASTER_KEY}"} and cfg["ledger"] == {"url": "${DATABASE_URL}"}
    assert "bedrock-claude" not in models
    notes = out.stderr.splitlines()
    assert all(n.startswith("# not mapped: ") for n in notes)
    assert cfg["state"] == {"backend": "redis", "url": "redis://localhost:6379/0"}  # LiteLLM's shared state, ours
    for words in ("bedrock/anthropic.claude-3", "mock_response", "alerting", "drop_params",
                  "gpt-4o-eu): no price known"):
        assert any(words in n for n in notes), words


def test_not_a_litellm_config_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("providers: {}\n")
    out = run("import-litellm", str(bad))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no model_list" in out.stderr
    out = run("import-litellm", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1


def test_deployments_litellm_sends_to_the_responses_api_keep_going_there(tmp_path):
    src = tmp_path / "litellm.yaml"
    src.write_text("""\
model_list:
  - model_name: pro
    litellm_params: {model: openai/responses/gpt-5.5-pro, api_key: os.environ/OPENAI_API_KEY}
  - model_name: native
    litellm_params: {model: openai/gpt-5.5, api_key: os.environ/OPENAI_API_KEY}
    model_info: {supported_endpoints: ["/v1/responses"]}
  - model_name: chat
    litellm_params: {model: openai/gpt-5.5, api_key: os.environ/OPENAI_API_KEY}
""")
    out = run("import-litellm", str(src))
    assert out.returncode == 0, out.stderr
    models = {m["name"]: m for m in yaml.safe_load(out.stdout)["models"]}
    assert (models["pro"]["model"], models["pro"]["api"]) == ("gpt-5.5-pro", "responses")
    assert models["native"]["api"] == "responses" and "api" not in models["chat"]
    (tmp_path / "switchman.yaml").write_text(out.stdout)
    checked = run("check", "--config", str(tmp_path / "switchman.yaml"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("via the Responses API") == 2
