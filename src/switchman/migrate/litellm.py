"""``switchman import-litellm config.yaml > switchman.yaml``: a LiteLLM proxy config, translated.

What maps:

- ``model_list``: each deployment becomes a model. Its provider comes from the ``litellm_params.model``
  prefix (``openai/``, ``anthropic/``, ``gemini/``, ``azure/``, ``groq/``, ``together_ai/``,
  ``fireworks_ai/``, ``deepseek/``, ``mistral/``, ``openrouter/``, ``ollama/``, ``hosted_vllm/``),
  or from the model's name when there is none (``gpt-*``, ``o1``/``o3``/``o4``, ``claude-*``,
  ``gemini-*``), as LiteLLM infers it. Deployments with the same ``api_base`` and key share a
  provider. ``api_key: os.environ/VAR`` becomes ``${VAR}``. ``rpm``/``tpm`` become ``limits``,
  ``input_cost_per_token``/``output_cost_per_token`` a ``price`` per 1M tokens, ``timeout`` the
  model's total timeout.
- A ``model_name`` with several deployments becomes a route of that name over them, by
  ``router_settings.routing_strategy``: ``simple-shuffle`` → ``weighted`` (by ``weight``, else rpm,
  else tpm, else evenly); ``least-busy`` → ``least-busy``; ``latency-based-routing`` →
  ``least-latency``; ``usage-based-routing(-v2)`` → ``weighted`` with ``prefer: headroom``;
  ``cost-based-routing`` → ``first`` over the deployments cheapest first.
- ``router_settings.fallbacks`` and ``context_window_fallbacks`` become each model's (or route's)
  ``fallbacks`` (switchman falls back on any failure, the context window's included);
  ``num_retries`` → ``retry.attempts`` (one more: the first try); ``allowed_fails`` →
  ``breaker.failures``; ``cooldown_time`` → ``breaker.cooldown``; ``timeout`` → ``deadline``.
- The same keys under ``litellm_settings`` (``fallbacks``, ``context_window_fallbacks``,
  ``num_retries``, ``request_timeout``), which the proxy hands its router: fallback lists of both
  sections add up, ``router_settings`` wins otherwise.
- ``redis_host``/``redis_port``/``redis_password`` (or ``redis_url``) → ``state: {backend: redis}``,
  so limits, in-flight counts and posteriors are shared by every replica, as LiteLLM's are.
- ``general_settings.master_key`` → ``auth.admin_key``; a PostgreSQL ``database_url`` → the ledger.

Everything else is listed, with the reason, on standard error as ``# not mapped:`` lines, and the
config printed passes ``switchman check``.
"""

from __future__ import annotations

import re
import sys
from collections import OrderedDict
from typing import Any

import yaml

_PREFIX = {"openai": "openai", "text-completion-openai": "openai", "anthropic": "anthropic", "gemini": "gemini",
           "azure": "azure", "groq": "groq", "together_ai": "together", "fireworks_ai": "fireworks",
           "deepseek": "deepseek", "mistral": "mistral", "openrouter": "openrouter", "ollama": "ollama",
           "ollama_chat": "ollama", "hosted_vllm": "vllm", "vllm": "vllm"}
_STRATEGY = {"simple-shuffle": "weighted", "least-busy": "least-busy", "latency-based-routing": "least-latency",
             "usage-based-routing": "weighted", "usage-based-routing-v2": "weighted",
             "cost-based-routing": "first"}
_PARAMS = {"model", "api_key", "api_base", "api_version", "rpm", "tpm", "input_cost_per_token",
           "output_cost_per_token", "timeout", "weight", "stream_timeout"}


class ImportProblem(ValueError):
    """The file is not a LiteLLM config this can read."""


def _env(v: Any) -> Any:
    if isinstance(v, str) and v.startswith("os.environ/"):
        return "${" + v.split("/", 1)[1] + "}"
    return v


def _kind(model: str) -> tuple[str | None, str]:
    """(switchman provider kind, upstream model id) of a LiteLLM model string."""
    if "/" in model:
        prefix, rest = model.split("/", 1)
        if prefix in _PREFIX:
            return _PREFIX[prefix], rest
        return None, model
    m = model.lower()
    if m.startswith(("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci", "babbage")):
        return "openai", model
    if m.startswith("claude"):
        return "anthropic", model
    if m.startswith("gemini"):
        return "gemini", model
    return None, model


def _api(kind: str, upstream: str, info: Any) -> str | None:
    """The upstream id, when a deployment is reached through OpenAI's Responses API: LiteLLM's
    ``openai/responses/<model>`` prefix, or ``model_info.supported_endpoints`` naming
    ``/v1/responses`` and not ``/v1/chat/completions``. None: the chat API."""
    if kind not in ("openai", "azure"):
        return None
    if upstream.startswith("responses/"):
        return upstream.split("/", 1)[1]
    ends = info.get("supported_endpoints") if isinstance(info, dict) else None
    if isinstance(ends, list) and "/v1/responses" in ends and "/v1/chat/completions" not in ends:
        return upstream
    return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]+", "-", name).strip("-") or "model"


def translate(doc: Any) -> tuple[dict, list[str]]:
    """(switchman config, the settings not mapped with why) for a parsed LiteLLM config."""
    if not isinstance(doc, dict) or not isinstance(doc.get("model_list"), list):
        raise ImportProblem("not a LiteLLM proxy config: no model_list")
    notes: list[str] = []
    for k in doc:
        if k not in ("model_list", "router_settings", "general_settings", "litellm_settings", "environment_variables"):
            notes.append(f"{k}: a section switchman has no counterpart for")
    providers: OrderedDict[tuple, dict] = OrderedDict()
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for i, entry in enumerate(doc["model_list"]):
        m = _deployment(entry, i, providers, notes)
        if m is not None:
            groups.setdefault(str(entry.get("model_name")), []).append(m)
    rs = _merged(doc, notes)
    models, routes, names = _models_and_routes(groups, rs, notes)
    _fallbacks(rs, names, models, routes, notes)
    out: dict = {"providers": {p["name"]: {k: v for k, v in p.items() if k != "name"} for p in providers.values()},
                 "models": models}
    if routes:
        out["routes"] = routes
    _router_settings(rs, out, notes)
    _general(doc.get("general_settings") or {}, out, notes)
    for k in doc.get("litellm_settings") or {}:
        if k not in _ROUTER_KEYS:
            notes.append(f"litellm_settings.{k}: LiteLLM's own library setting")
    if doc.get("environment_variables"):
        notes.append("environment_variables: set them in the environment; the config reads ${VAR}")
    return out, notes


def _deployment(entry: Any, i: int, providers: OrderedDict, notes: list[str]) -> dict | None:
    where = f"model_list[{i}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("litellm_params"), dict) or not entry.get("model_name"):
        notes.append(f"{where}: needs model_name and litellm_params; skipped")
        return None
    lp = entry["litellm_params"]
    kind, upstream = _kind(str(lp.get("model", "")))
    if kind is None:
        notes.append(f"{where} ({entry['model_name']}): provider of '{lp.get('model')}' is not one switchman "
                     "speaks to (Bedrock, Vertex AI, SageMaker and the like); skipped")
        return None
    base, key = lp.get("api_base"), _env(lp.get("api_key"))
    if kind == "ollama" and base and not str(base).rstrip("/").endswith("/v1"):
        base = str(base).rstrip("/") + "/v1"  # switchman speaks Ollama's OpenAI-compatible API
    if isinstance(key, str) and key and not key.startswith("${"):
        notes.append(f"{where}.litellm_params.api_key: a literal key, copied as is; move it to the environment")
    pk = (kind, base, key, lp.get("api_version"))
    if pk not in providers:
        name = kind if not any(p["kind"] == kind for p in providers.values()) else f"{kind}-{len(providers) + 1}"
        p = {"name": name, "kind": kind}
        if base:
            p["base_url"] = base
        if key:
            p["api_key"] = key
        if lp.get("api_version"):
            p["api_version"] = lp["api_version"]
        providers[pk] = p
    m: dict = {"provider": providers[pk]["name"], "model": upstream}
    api = _api(kind, upstream, entry.get("model_info"))
    if api is not None:
        m["model"] = upstream = api
        m["api"] = "responses"
    if lp.get("input_cost_per_token") is not None or lp.get("output_cost_per_token") is not None:
        m["price"] = {"input": round(float(lp.get("input_cost_per_token") or 0) * 1e6, 9),
                      "output": round(float(lp.get("output_cost_per_token") or 0) * 1e6, 9)}
        from .. import catalog

        e = catalog.lookup(upstream)  # LiteLLM's costs have no cache rates: the catalog's, where it knows them
        for k in ("cached_input", "cache_write", "cache_write_1h"):
            if e is not None and getattr(e.price, k) is not None:
                m["price"][k] = float(getattr(e.price, k))
    else:
        _price(m, upstream, entry.get("model_info") or {}, kind, where, notes)
    limits = {k: int(lp[k]) for k in ("rpm", "tpm") if lp.get(k) is not None}
    if limits:
        m["limits"] = limits
    if lp.get("timeout") is not None:
        m["timeout"] = {"total": float(lp["timeout"])}
    m["_weight"] = float(lp.get("weight") or lp.get("rpm") or lp.get("tpm") or 1)
    for k in lp:
        if k not in _PARAMS:
            notes.append(f"{where}.litellm_params.{k}: no switchman counterpart")
    for k in entry:
        if k not in ("model_name", "litellm_params", "model_info"):
            notes.append(f"{where}.{k}: no switchman counterpart")
    return m


def _price(m: dict, upstream: str, info: dict, kind: str, where: str, notes: list[str]) -> None:
    """A deployment without costs: the catalog's price for it (or for ``model_info.base_model``, as
    LiteLLM prices an Azure deployment), 0 for a local server, else 0 flagged for the user to fill."""
    from .. import catalog

    base = str(info.get("base_model") or "").split("/")[-1]
    if catalog.lookup(upstream) is not None:
        return  # switchman prices it from its catalog itself
    e = catalog.lookup(base) if base else None
    if e is not None:
        m["price"] = {"input": float(e.price.input), "output": float(e.price.output)}
        if e.price.cached_input is not None:
            m["price"]["cached_input"] = float(e.price.cached_input)
    elif kind in ("ollama", "vllm"):
        m["price"] = {"input": 0, "output": 0}
    else:
        m["price"] = {"input": 0, "output": 0}
        notes.append(f"{where} ({upstream}): no price known (no cost in litellm_params, not in the catalog, no "
                     "model_info.base_model): 0 written, set the real one or its spend reads $0")


# litellm_settings keys the proxy hands its router when router_settings does not set them.
_ROUTER_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "num_retries", "request_timeout")


def _merged(doc: dict, notes: list[str]) -> dict:
    """router_settings, with what litellm_settings gives the router (router_settings wins; fallback
    lists of both sections add up, as the proxy merges them)."""
    rs = dict(doc.get("router_settings") or {})
    ls = doc.get("litellm_settings") or {}
    if not isinstance(rs, dict) or not isinstance(ls, dict):
        raise ImportProblem("router_settings and litellm_settings must be mappings")
    for k in _ROUTER_KEYS:
        if k not in ls:
            continue
        if k.endswith("fallbacks") and isinstance(ls[k], list):
            rs[k] = [*(rs.get(k) or []), *ls[k]]
        elif k == "request_timeout":
            rs.setdefault("timeout", ls[k])
        elif k in rs:
            notes.append(f"litellm_settings.{k}: router_settings.{k} set too, which the router uses")
        else:
            rs[k] = ls[k]
    return rs


def _models_and_routes(groups: OrderedDict, rs: dict, notes: list[str]) -> tuple[list, list, dict]:
    strategy = rs.get("routing_strategy", "simple-shuffle")
    kind = _STRATEGY.get(strategy)
    if kind is None:
        notes.append(f"router_settings.routing_strategy: '{strategy}' unknown; weighted used")
        kind = "weighted"
    models, routes, names = [], [], {}  # names: a LiteLLM model_name -> switchman model names
    for group, deps in groups.items():
        if len(deps) == 1:
            names[group] = [_safe(group)]
        else:
            names[group] = [f"{_safe(group)}-{j + 1}" for j in range(len(deps))]
        for n, d in zip(names[group], deps):
            models.append({"name": n, **{k: v for k, v in d.items() if k != "_weight"}})
        if len(deps) > 1:
            routes.append(_route(_safe(group), names[group], deps, kind, strategy))
    return models, routes, names


def _route(name: str, members: list[str], deps: list[dict], kind: str, strategy: str) -> dict:
    if kind == "weighted":
        policy: dict = {"kind": "weighted", "models": {n: d["_weight"] for n, d in zip(members, deps)}}
        if strategy.startswith("usage-based"):
            policy["prefer"] = "headroom"
    elif kind == "first":  # cost-based: cheapest first
        order = sorted(zip(members, deps), key=lambda x: sum((x[1].get("price") or {"input": 1e9}).values()))
        policy = {"kind": "first", "models": [n for n, _ in order]}
    else:
        policy = {"kind": kind, "models": members}
    return {"name": name, "policy": policy}


def _fallbacks(rs: dict, names: dict, models: list, routes: list, notes: list[str]) -> None:
    by_model = {m["name"]: m for m in models}
    by_route = {r["name"]: r for r in routes}
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        for item in rs.get(key) or ():
            if not isinstance(item, dict):
                notes.append(f"router_settings.{key}: an entry that is not a mapping; skipped")
                continue
            for src, dsts in item.items():
                targets = [n for d in (dsts if isinstance(dsts, list) else [dsts]) for n in names.get(str(d), [])]
                missing = [d for d in (dsts if isinstance(dsts, list) else [dsts]) if str(d) not in names]
                if missing:
                    notes.append(f"router_settings.{key}.{src}: unknown model(s) {', '.join(map(str, missing))}")
                if str(src) not in names or not targets:
                    continue
                holders = [by_route[_safe(str(src))]] if _safe(str(src)) in by_route else \
                    [by_model[n] for n in names[str(src)]]
                for h in holders:
                    fb = h.setdefault("fallbacks", [])
                    fb += [t for t in targets if t not in fb and t not in names[str(src)]]


def _router_settings(rs: dict, out: dict, notes: list[str]) -> None:
    for k, v in rs.items():
        if k in ("routing_strategy", "fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            continue
        if k == "num_retries":
            out.setdefault("retry", {})["attempts"] = int(v) + 1
        elif k == "allowed_fails":
            out.setdefault("breaker", {})["failures"] = max(1, int(v))
        elif k == "cooldown_time":
            out.setdefault("breaker", {})["cooldown"] = float(v)
        elif k == "timeout":
            out["deadline"] = float(v)
        elif k in ("redis_host", "redis_port", "redis_password", "redis_url"):
            continue  # below: one state URL
        else:
            notes.append(f"router_settings.{k}: no switchman counterpart")
    url = _redis_url(rs)
    if url is not None:  # LiteLLM shares cooldowns and usage there; switchman its limits, loads and posteriors
        out["state"] = {"backend": "redis", "url": url}


def _redis_url(rs: dict) -> str | None:
    if rs.get("redis_url"):
        return str(_env(rs["redis_url"]))
    if not rs.get("redis_host"):
        return None
    password = rs.get("redis_password")
    auth = f":{_env(password)}@" if password else ""
    return f"redis://{auth}{_env(rs['redis_host'])}:{_env(rs.get('redis_port', 6379))}/0"


def _general(gs: dict, out: dict, notes: list[str]) -> None:
    for k, v in gs.items():
        if k == "master_key":
            out["auth"] = {"admin_key": _env(v)}
        elif k == "database_url" and isinstance(_env(v), str) and str(_env(v)).startswith(("postgres", "${")):
            out["ledger"] = {"url": _env(v)}
        else:
            notes.append(f"general_settings.{k}: no switchman counterpart")


def import_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="switchman import-litellm",
                                description="print a switchman config translated from a LiteLLM config.yaml")
    p.add_argument("file")
    a = p.parse_args(argv)
    try:
        with open(a.file, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        cfg, notes = translate(doc)
    except (OSError, yaml.YAMLError, ImportProblem) as e:
        print(f"switchman import-litellm: {a.file}: {e}", file=sys.stderr)
        return 2
    print(f"# translated from {a.file} by switchman import-litellm")
    print(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=110), end="")
    for n in notes:
        print(f"# not mapped: {n}", file=sys.stderr)
    return 0
