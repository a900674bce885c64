"""Config: strict, located errors; ${VAR}; catalog prices; references resolved."""

from __future__ import annotations

from decimal import Decimal

import pytest

from switchman.configfile import from_env, loads
from switchman.errors import ConfigError

BASE = """\
providers:
  oa: {kind: openai, api_key: "${OA_KEY}"}
  local: {kind: ollama}
models:
  - {name: gpt-4o-mini, provider: oa}
  - name: llama
    provider: local
    model: "llama3.1:8b"
    price: {input: 0, output: 0}
routes:
  - name: auto
    policy: {kind: first, models: [llama, gpt-4o-mini]}
"""


def test_resolves_references_env_and_catalog_prices():
    cfg = loads(BASE, file="s.yaml", env={"OA_KEY": "sk-1"})
    m = cfg.models["gpt-4o-mini"]
    assert m.provider.api_key == "sk-1" and m.provider.base_url == "https://api.openai.com/v1"
    assert m.price.input == Decimal("0.15") and m.price.output == Decimal("0.60") and m.priced_by == "catalog"
    assert cfg.models["llama"].provider.base_url == "http://127.0.0.1:11434/v1"
    assert cfg.models["llama"].upstream == "llama3.1:8b"
    assert cfg.routes["auto"].models == ("llama", "gpt-4o-mini")
    assert "sk-1" not in repr(cfg), "keys never printed"


@pytest.mark.parametrize("text,where,key,words", [
    (BASE.replace("kind: first", "kind: first, colour: red"), "s.yaml:12", "routes[0].policy.colour", "unknown key"),
    (BASE.replace("provider: local", "provider: nowhere"), "s.yaml:7", "models[1].provider", "unknown provider 'nowhere'"),
    (BASE.replace("[llama, gpt-4o-mini]", "[llama, gpt-5-turbo]"), "s.yaml:12", "routes[0].policy.models", "unknown model 'gpt-5-turbo'"),
    (BASE + "  - name: auto\n    policy: {kind: first, models: [llama]}\n", "s.yaml:13", "routes[1].name", "duplicate"),
    (BASE.replace("input: 0,", "input: cheap,"), "s.yaml:9", "models[1].price.input", "must be a number"),
    (BASE.replace("{kind: ollama}", "{kind: olama}"), "s.yaml:3", "providers.local.kind", "unknown provider kind"),
    (BASE + "caches: {}\n", "s.yaml:13", "caches", "unknown key"),
    (BASE.replace('name: llama\n', 'name: 7\n'), "s.yaml:6", "models[1].name", "must be str"),
    (BASE.replace("model: \"llama3.1:8b\"\n    price: {input: 0, output: 0}\n", "model: mystery-model\n"),
     "s.yaml:6", "models[1]", "no price for 'mystery-model'"),
])
def test_errors_name_file_line_and_key(text, where, key, words):
    with pytest.raises(ConfigError) as e:
        loads(text, file="s.yaml", env={"OA_KEY": "k"})
    msg = str(e.value)
    assert msg.startswith(where + ","), msg
    assert f"key '{key}'" in msg and words in msg, msg


def test_missing_env_var_is_named():
    with pytest.raises(ConfigError, match="OA_KEY is not set"):
        loads(BASE, file="s.yaml", env={})
    cfg = loads(BASE.replace("${OA_KEY}", "${OA_KEY:-fallback}"), env={})
    assert cfg.models["gpt-4o-mini"].provider.api_key == "fallback"


def test_invalid_yaml_is_located():
    with pytest.raises(ConfigError, match=r"s.yaml:3"):
        loads("providers:\n  oa: {kind: openai\nmodels: []\n", file="s.yaml", env={})


def test_weighted_policy_and_model_fallbacks():
    text = BASE.replace("    policy: {kind: first, models: [llama, gpt-4o-mini]}",
                        "    policy: {kind: weighted, models: {llama: 3, gpt-4o-mini: 1}}")
    text = text.replace("- {name: gpt-4o-mini, provider: oa}", "- {name: gpt-4o-mini, provider: oa, fallbacks: [llama]}")
    cfg = loads(text, env={"OA_KEY": "k"})
    assert cfg.routes["auto"].weights == (3.0, 1.0)
    assert cfg.models["gpt-4o-mini"].fallbacks == ("llama",)
    with pytest.raises(ConfigError, match="weights must be non-negative"):
        loads(text.replace("llama: 3", "llama: -1"), env={"OA_KEY": "k"})


def test_azure_needs_an_api_version():
    text = "providers:\n  az: {kind: azure, base_url: 'https://x.openai.azure.com'}\n"
    with pytest.raises(ConfigError, match="api_version"):
        loads(text, env={})
    cfg = loads(text.replace("}", ", api_version: '2024-10-21'}"), env={})
    assert cfg.providers["az"].auth == "api-key"


def test_no_file_builds_from_environment_keys():
    cfg = from_env({"ANTHROPIC_API_KEY": "a-key", "GEMINI_API_KEY": "g-key"})
    assert set(cfg.providers) == {"anthropic", "gemini"}
    assert "claude-haiku-4-5" in cfg.models and "gemini-2.5-flash" in cfg.models
    assert not any(m.provider.kind == "openai" for m in cfg.models.values())
    assert set(cfg.routes["auto"].models) == set(cfg.models)
    assert from_env({}).models == {}


def test_one_hour_cache_write_price_from_the_catalog_or_overridden():
    cfg = loads("""
providers:
  an: {kind: anthropic, api_key: k}
models:
  - {name: sonnet, provider: an, model: claude-sonnet-4-5}
  - {name: mine, provider: an, model: claude-sonnet-4-5, price: {input: 3, output: 15, cache_write_1h: 5.5}}
""", env={})
    assert cfg.models["sonnet"].price.cache_write_1h == Decimal("6")  # Anthropic's list price: 2 x input
    mine = cfg.models["mine"].price
    assert mine.cache_write_1h == Decimal("5.5")
    assert mine.cost(1_000, 0, cache_write=1_000, cache_write_1h=1_000) == Decimal("0.0055")
