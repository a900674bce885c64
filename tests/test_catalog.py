from decimal import Decimal

import orjson
import pytest

from switchman import catalog
from switchman.catalog import entries, lookup

D = Decimal


# Figures checked against the vendors' pages (see each entry's "source" in catalog.json).
@pytest.mark.parametrize(
    ("model", "input", "output", "cached_input", "cache_write"),
    [
        ("gpt-4o-mini", "0.15", "0.60", "0.075", "0.15"),
        ("gpt-4.1", "2", "8", "0.50", "2"),
        ("gpt-6.2-sol", "2", "10", "0.10", "2.50"),
        ("claude-sonnet-4-5", "3", "15", "0.30", "3.75"),
        ("claude-opus-5-5", "4", "20", "0.20", "5"),
        ("claude-haiku-4-5", "1", "5", "0.10", "1.25"),
        ("gemini-2.5-flash", "0.30", "2.50", "0.03", "0.30"),
        ("gemini-2.5-pro", "1.25", "10", "0.125", "1.25"),
        ("deepseek-flash", "0.30", "1.20", "0.006", "0.30"),
        ("llama-3.3-70b-versatile", "0.59", "0.79", None, "0.59"),
    ],
)
def test_known_prices_are_exact_decimals(model, input, output, cached_input, cache_write):
    price = lookup(model).price
    assert price.input == D(input)  # equality with D("0.15") fails for a float-built D(0.15)
    assert price.output == D(output)
    assert price.cached_input == (None if cached_input is None else D(cached_input))
    assert price.cache_write == D(cache_write)


def test_known_limits_and_vision():
    mini = lookup("gpt-4o-mini")
    assert (mini.vendor, mini.context_window, mini.max_output, mini.vision) == ("openai", 128000, 16384, True)
    assert lookup("o3-mini").vision is False
    sonnet = lookup("claude-sonnet-4-5")
    assert (sonnet.context_window, sonnet.max_output, sonnet.price.cache_write_1h) == (200000, 64000, D("6"))


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("GPT-4o-Mini", "gpt-4o-mini"),
        ("openai/gpt-4o", "gpt-4o"),
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("groq/llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-4o-2024-08-06", "gpt-4o"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gemini-2.5-flash-001", "gemini-2.5-flash"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("groq/meta-llama/llama-4-scout-17b-16e-instruct", "meta-llama/llama-4-scout-17b-16e-instruct"),
        ("mistral-large-latest", "mistral-large-2512"),
        ("codestral-latest", "codestral-2508"),
        ("deepseek-v4-flash", "deepseek-flash"),
        ("llama3.1:8b", "llama3.1"),
        ("ollama/qwen3:8b", "qwen3"),
        ("llama3.3:70b-instruct-q4_K_M", "llama3.3"),
    ],
)
def test_lookup_resolves_common_spellings(asked, expected):
    hit = lookup(asked)
    assert hit is not None, asked
    assert hit.id == expected


def test_an_alias_and_its_id_give_the_same_entry():
    assert lookup("mistral-medium-latest") is lookup("mistral-medium-2604")


def test_a_snapshot_priced_apart_keeps_its_own_price():
    assert lookup("gpt-4o-2024-05-13").price.input == D("5")
    assert lookup("gpt-4o-2024-08-06").price.input == D("2.50")


@pytest.mark.parametrize(
    "model",
    ["", "gpt-99", "my-finetune", "gpt-4o-mini-tts", "gemini-2.5-flash-preview-09-2025", "openai/not-a-model"],
)
def test_unknown_models_are_none(model):
    assert lookup(model) is None


def test_local_ollama_models_are_free():
    local = lookup("llama3.1:8b")
    assert local.host == "ollama"
    assert local.price.cost(10_000, 2_000, cache_read=5_000, cache_write=1_000) == 0


def test_every_entry_is_priced_and_attributed():
    all_entries = entries()
    assert len(all_entries) > 50
    for e in all_entries:
        p = e.price
        assert isinstance(p.input, Decimal) and p.input >= 0, e.id
        assert isinstance(p.output, Decimal) and p.output >= 0, e.id
        assert p.cached_input is None or p.cached_input <= p.input, e.id
        assert e.vendor and e.source, e.id
        if e.long_context is not None:
            assert e.long_context.above > 0 and e.long_context.price.input >= p.input, e.id


def test_vendors_named_in_the_brief_are_all_present():
    vendors = {e.vendor for e in entries()}
    assert {"openai", "anthropic", "google", "mistral", "deepseek", "meta", "qwen"} <= vendors
    assert {"groq", "together", "fireworks", "ollama"} <= {e.host for e in entries()}


def test_no_name_points_at_two_entries():
    seen: dict[str, str] = {}
    for e in entries():
        for name in (e.id, *e.aliases):
            key = name.lower()
            assert key not in seen, f"{name} is both {seen[key]} and {e.id}"
            seen[key] = e.id


def test_anthropic_cache_writes_are_exact_multiples_of_input():
    claude = [e for e in entries() if e.vendor == "anthropic"]
    assert claude
    for e in claude:
        assert e.price.cache_write == e.price.input * D("1.25"), e.id
        assert e.price.cache_write_1h == e.price.input * 2, e.id


def test_cost_of_a_usage_with_cache_reads_is_exact():
    # 10k prompt tokens of which 4k were cache hits, 1k completion tokens:
    # 6k x 0.15 + 1k x 0.60 + 4k x 0.075 = 1800 USD per 1M -> 0.0018
    assert lookup("gpt-4o-mini").price.cost(10_000, 1_000, cache_read=4_000) == D("0.0018")
    # 100k prompt = 20k plain + 60k read + 20k written; 2k out:
    # 20k x 3 + 60k x 0.30 + 20k x 3.75 + 2k x 15 = 183000 per 1M -> 0.183
    cost = lookup("claude-sonnet-4-5").price.cost(100_000, 2_000, cache_read=60_000, cache_write=20_000)
    assert cost == D("0.183")


def test_gemini_long_context_tier_is_recorded():
    tier = lookup("gemini-2.5-pro").long_context
    assert tier.above == 200_000
    assert (tier.price.input, tier.price.output, tier.price.cached_input) == (D("2.50"), D("15"), D("0.25"))


def test_catalog_is_dated():
    assert catalog.as_of() == "2026-11-22"


def _doc(*models):
    return orjson.dumps({"as_of": "2026-11-22", "models": list(models)})


def _model(**overrides):
    return {"id": "m", "vendor": "v", "input": "1", "output": "2", "source": "s", **overrides}


def test_data_file_typos_are_rejected():
    with pytest.raises(ValueError, match="cached_inptu"):
        catalog._parse(_doc(_model(cached_inptu="0.1")))
    with pytest.raises(ValueError, match="'m2'"):
        catalog._parse(_doc(_model(), _model(id="m2", aliases=["M"])))
    with pytest.raises(ValueError, match="input"):
        catalog._parse(_doc(_model(input="cheap")))
    with pytest.raises(ValueError, match="output"):
        catalog._parse(_doc({"id": "m", "vendor": "v", "input": "1", "source": "s"}))


def test_numbers_in_the_data_file_become_exact_decimals():
    parsed = catalog._parse(_doc(_model(input=0.15, output=0.6)))
    assert parsed.entries[0].price.input == D("0.15")
    assert parsed.entries[0].price.output == D("0.6")
