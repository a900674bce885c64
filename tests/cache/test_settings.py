"""The cache section's errors name the file, line and key, like every other section's."""

from __future__ import annotations

import pytest

from switchman import configfile
from switchman.errors import ConfigError

BASE = """\
providers:
  oa: {kind: openai, api_key: "k"}
models:
  - {name: gpt-4o-mini, provider: oa}
routes:
  - name: faq
    policy: {kind: first, models: [gpt-4o-mini]}
"""


@pytest.mark.parametrize("extra,key,words", [
    ("cache: {enabled: true, backend: disk}\n", "cache.backend", "must be one of memory, redis"),
    ("cache: {enabled: true, scope: tenant}\n", "cache.scope", "must be one of key, user, team, global"),
    ("cache: {enabled: true, url: 'redis://x'}\n", "cache.url", "is for backend: redis"),
    ("cache: {enabled: true, ttl: -1}\n", "cache.ttl", "greater than 0"),
    ("cache: {enabled: yes-please}\n", "cache.enabled", "must be bool"),
    ("cache: {enabled: true, semantics: on}\n", "cache.semantics", "unknown key"),
])
def test_bad_cache_sections_are_named(extra, key, words):
    with pytest.raises(ConfigError) as e:
        configfile.loads(BASE + extra, file="s.yaml", env={})
    assert key in str(e.value) and words in str(e.value) and "s.yaml" in str(e.value)


def test_a_route_overrides_the_top_level():
    cfg = configfile.loads(BASE.replace("policy: {kind: first, models: [gpt-4o-mini]}",
                                        "policy: {kind: first, models: [gpt-4o-mini]}\n    cache: {ttl: 86400, scope: global}")
                           + "cache: {enabled: false, ttl: 60}\n", file="s.yaml", env={})
    assert cfg.cache.enabled is False and cfg.cache.ttl == 60
    faq = cfg.routes["faq"].cache
    assert faq.enabled is True and faq.ttl == 86400 and faq.scope == "global"
    with pytest.raises(ConfigError) as e:
        configfile.loads(BASE.replace("policy: {kind: first, models: [gpt-4o-mini]}",
                                      "policy: {kind: first, models: [gpt-4o-mini]}\n    cache: {backend: redis}"),
                         file="s.yaml", env={})
    assert "routes[0].cache.backend" in str(e.value)


@pytest.mark.parametrize("extra,key,words", [
    ("cache: {enabled: true, semantic: {max_error: 0.7}}\n", "cache.semantic.max_error", "below 0.5"),
    ("cache: {enabled: true, semantic: {verify: 0}}\n", "cache.semantic.verify", "above 0"),
    ("cache: {enabled: true, semantic: {embedder: bert}}\n", "cache.semantic.embedder", "minilm, static"),
    ("cache: {enabled: true, semantic: {threshold: 0.9}}\n", "cache.semantic.threshold", "unknown key"),
])
def test_bad_semantic_sections_are_named(extra, key, words):
    with pytest.raises(ConfigError) as e:
        configfile.loads(BASE + extra, file="s.yaml", env={})
    assert key in str(e.value) and words in str(e.value)


def test_semantic_without_the_extra_names_it(monkeypatch):
    from switchman.cache import embedder

    monkeypatch.setattr(embedder, "missing_extra", lambda: "semantic caching needs the 'onnxruntime' package: "
                        + embedder.EXTRA)
    with pytest.raises(ConfigError) as e:
        configfile.loads(BASE.replace("policy: {kind: first, models: [gpt-4o-mini]}",
                                      "policy: {kind: first, models: [gpt-4o-mini]}\n    cache: {semantic: {}}"),
                         file="s.yaml", env={})
    assert "routes[0].cache.semantic" in str(e.value) and "pip install 'switchman[semantic]'" in str(e.value)


def test_semantic_settings_inherit_and_override():
    cfg = configfile.loads(BASE.replace("policy: {kind: first, models: [gpt-4o-mini]}",
                                        "policy: {kind: first, models: [gpt-4o-mini]}\n    cache: {semantic: {max_error: 0.01}}")
                           + "cache: {enabled: true, semantic: {verify: 0.1}}\n", file="s.yaml", env={})
    assert cfg.cache.semantic.verify == 0.1 and cfg.cache.semantic.max_error == 0.02
    own = cfg.routes["faq"].cache.semantic
    assert own.verify == 0.1 and own.max_error == 0.01
