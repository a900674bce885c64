"""Reading config: YAML parsed strictly (unknown keys and wrong types are errors naming the file,
line and key), ``${VAR}`` substituted from the environment, then loaded into the frozen runtime
objects of ``config`` with every reference resolved. This is the only module that reads the
environment.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import catalog
from .config import (
    AuthSpec,
    BreakerSpec,
    ChecksSpec,
    Config,
    HedgeSpec,
    Limits,
    ModelSpec,
    PolicySpec,
    Price,
    ProviderSpec,
    ResilienceSpec,
    RetrySpec,
    RouteSpec,
    RuleSpec,
    ServerSpec,
    Timeout,
)
from .errors import ConfigError
from .http.limits import Limits as ConnectionLimits
from .providers import AUTH_STYLES, ENV_DEFAULT_MODELS, KINDS

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
POLICY_KINDS = ("first", "weighted", "cheapest", "rules", "learned", "cascade", "least-latency", "least-busy",
                "bandit", "experiment")


class _Doc:
    """The parsed document plus where each dotted key sits in the file."""

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.lines: dict[str, int] = {}

    def at(self, path: str) -> str:
        # The nearest located ancestor: a missing key is reported at its parent's line.
        p = path
        while p:
            if p in self.lines:
                return f"{self.file}:{self.lines[p]}"
            p = p.rpartition(".")[0] if "." in p else ""
        return self.file

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(message, where=self.at(path), key=path or None)

    def build(self, node: yaml.Node, path: str) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else None
                if not isinstance(key, str):
                    raise ConfigError("keys must be strings", where=f"{self.file}:{k.start_mark.line + 1}")
                sub = f"{path}.{key}" if path else key
                if key in out:
                    raise ConfigError("duplicate key", where=f"{self.file}:{k.start_mark.line + 1}", key=sub)
                self.lines[sub] = k.start_mark.line + 1
                out[key] = self.build(v, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, f"{path}[{i}]") for i, v in enumerate(node.value)]
        value = yaml.SafeLoader(
            "").construct_object(node) if node.tag != "tag:yaml.org,2002:str" else node.value
        if isinstance(value, str):
            value = self.expand(value, path)
        return value

    def expand(self, s: str, path: str) -> str:
        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            v = self.env.get(name)
            if v is None or v == "":
                if default is not None:
                    return default
                raise self.error(path, f"environment variable {name} is not set")
            return v

        return _VAR.sub(sub, s) if "${" in s else s


class _Obj:
    """Strict access to one mapping of the document."""

    def __init__(self, doc: _Doc, path: str, value: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()):
        if not isinstance(value, dict):
            raise doc.error(path, f"must be a mapping, not {_tname(value)}")
        for k in value:
            if k not in allowed:
                sub = f"{path}.{k}" if path else k
                raise doc.error(sub, f"unknown key '{k}' (allowed: {', '.join(allowed)})")
        for k in required:
            if k not in value:
                raise doc.error(path, f"missing required key '{k}'")
        self.doc, self.path, self.v = doc, path, value

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, typ: type | tuple, default: Any = None) -> Any:
        if key not in self.v or self.v[key] is None:
            return default
        v = self.v[key]
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if isinstance(v, bool) and typ in (int, float):
            raise self.doc.error(self.sub(key), "must be a number, not a boolean")
        if not isinstance(v, typ):
            want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise self.doc.error(self.sub(key), f"must be {want}, not {_tname(v)}")
        return v

    def positive(self, key: str, typ: type, default: Any = None) -> Any:
        v = self.get(key, typ, default)
        if v is not None and v <= 0:
            raise self.doc.error(self.sub(key), "must be greater than 0")
        return v

    def names(self, key: str) -> tuple[str, ...]:
        v = self.get(key, list, [])
        for i, x in enumerate(v):
            if not isinstance(x, str):
                raise self.doc.error(f"{self.sub(key)}[{i}]", f"must be a model name, not {_tname(x)}")
        return tuple(v)


def _tname(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
            bool: "a boolean", type(None): "empty"}.get(type(v), type(v).__name__)


def _money(doc: _Doc, path: str, v: Any) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise doc.error(path, f"must be a price in USD per 1M tokens, not {_tname(v)}")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise doc.error(path, f"must be a number, not {v!r}") from None
    if d < 0 or not d.is_finite():
        raise doc.error(path, "must be a non-negative number")
    return d


def load(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load ``path`` (default ``./switchman.yaml``); with no such file and no path given, build a
    config from the provider keys in the environment."""
    env = os.environ if env is None else env
    if path is None:
        p = Path("switchman.yaml")
        if not p.exists():
            return from_env(env)
    else:
        p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror}", where=str(p)) from None
    return loads(text, file=str(p), env=env)


def loads(text: str, *, file: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    doc = _Doc(file, os.environ if env is None else env)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{file}:{mark.line + 1}" if mark else file
        raise ConfigError(f"invalid YAML: {e.problem or e}", where=where) from None
    raw = doc.build(node, "") if node is not None else {}
    return _resolve(doc, raw)


def _resolve(doc: _Doc, raw: Any) -> Config:
    top = _Obj(doc, "", raw, ("server", "providers", "models", "routes", "auth", "deadline", "retry", "breaker",
                              "health", "ledger", "state", "budgets", "default_max_output", "metrics", "tracing",
                              "log", "cache"))
    server = _server(doc, top.get("server", dict, {}))
    providers: dict[str, ProviderSpec] = {}
    praw = top.get("providers", dict, {})
    for name, v in praw.items():
        providers[name] = _provider(doc, f"providers.{name}", name, v)
    models: dict[str, ModelSpec] = {}
    default_output = top.positive("default_max_output", int, 4096)  # for models whose output limit is unknown
    for i, v in enumerate(top.get("models", list, [])):
        m = _model(doc, f"models[{i}]", v, providers, default_output)
        if m.name in models:
            raise doc.error(f"models[{i}].name", f"duplicate model name '{m.name}'")
        models[m.name] = m
    routes: dict[str, RouteSpec] = {}
    for i, v in enumerate(top.get("routes", list, [])):
        r = _route(doc, f"routes[{i}]", v)
        if r.name in routes or r.name in models:
            raise doc.error(f"routes[{i}].name", f"duplicate name '{r.name}' (routes and models share one namespace)")
        routes[r.name] = r
    # Every reference resolves, or the file is wrong.
    for i, m in enumerate(models.values()):
        for j, f in enumerate(m.fallbacks):
            if f not in models:
                raise doc.error(f"models[{i}].fallbacks[{j}]", f"unknown model '{f}' (models: {', '.join(models)})")
    for i, r in enumerate(routes.values()):
        for key, names in (("policy.models", r.models), ("fallbacks", r.fallbacks)):
            for j, n in enumerate(names):
                if n not in models:
                    raise doc.error(f"routes[{i}].{key}", f"unknown model '{n}' (models: {', '.join(models) or 'none'})")
        if r.spec is not None:
            _resolve_policy(doc, f"routes[{i}].policy", r.spec, models, routes)
    _no_route_cycles(doc, routes)
    auth = _auth(doc, top.get("auth", dict, {}))
    from .accounting import settings as accounting  # the ledger's own sections, parsed by it

    acct = accounting.parse({k: raw[k] for k in ("ledger", "state", "budgets") if k in raw}, doc.error,
                            names=[*models, *routes])
    from .telemetry import settings as telemetry

    tele = telemetry.parse({k: raw[k] for k in telemetry.SECTIONS if k in raw}, doc.error)
    cache, routes = _cache(doc, raw, routes, acct, models)
    return Config(server=server, providers=providers, models=models, routes=routes, auth=auth,
                  resilience=_resilience(doc, top), accounting=acct, telemetry=tele, cache=cache, source=doc.file)


def _cache(doc: _Doc, raw: dict, routes: dict[str, RouteSpec], acct, models: dict) -> tuple:
    """The top-level cache section, and each route's own over it."""
    from .cache import settings as cache

    state = acct.state.url if acct is not None and acct.state.backend == "redis" else None
    top = cache.parse(raw.get("cache"), doc.error, state)
    out = {}
    for i, (name, r) in enumerate(routes.items()):
        own = cache.for_route(r.cache, f"routes[{i}].cache", doc.error, top) if r.cache is not None else None
        out[name] = replace(r, cache=own)
        cache.check_judge(own, f"routes[{i}].cache.semantic.judge", doc.error, models)
    cache.check_judge(top, "cache.semantic.judge", doc.error, models)
    return top, out


def _resilience(doc: _Doc, top: _Obj) -> ResilienceSpec:
    ro = _Obj(doc, "retry", top.get("retry", dict, {}), ("attempts", "backoff", "max_backoff", "budget", "min_retries",
                                                                   "max_retry_after"))
    d = RetrySpec()
    budget = ro.get("budget", float, d.budget)
    if not 0 <= budget <= 1:
        raise doc.error("retry.budget", "must be a share between 0 and 1 (e.g. 0.2 for 20%)")
    retry = RetrySpec(
        attempts=ro.positive("attempts", int, d.attempts), backoff=ro.positive("backoff", float, d.backoff),
        max_backoff=ro.positive("max_backoff", float, d.max_backoff), budget=budget,
        min_retries=ro.get("min_retries", int, d.min_retries),
        max_retry_after=ro.positive("max_retry_after", float, d.max_retry_after),
    )
    bo = _Obj(doc, "breaker", top.get("breaker", dict, {}),
              ("failures", "window", "cooldown", "max_cooldown", "max_ejection_percent"))
    b = BreakerSpec()
    pct = bo.get("max_ejection_percent", float, b.max_ejection_percent)
    if not 0 <= pct <= 100:
        raise doc.error("breaker.max_ejection_percent", "must be between 0 and 100")
    breaker = BreakerSpec(
        failures=bo.positive("failures", int, b.failures), window=bo.positive("window", float, b.window),
        cooldown=bo.positive("cooldown", float, b.cooldown), max_cooldown=bo.positive("max_cooldown", float, b.max_cooldown),
        max_ejection_percent=pct,
    )
    ho = _Obj(doc, "health", top.get("health", dict, {}), ("interval",))
    return ResilienceSpec(deadline=top.positive("deadline", float, ResilienceSpec().deadline), retry=retry,
                          breaker=breaker, health_interval=ho.positive("interval", float))


def _server(doc: _Doc, v: dict) -> ServerSpec:
    o = _Obj(doc, "server", v, ("host", "port", "workers", "max_body_mb", "allow_public_without_key",
                                "max_header_kb", "max_head_kb", "max_headers", "header_timeout", "body_timeout",
                                "idle_timeout", "send_timeout", "max_connections"))
    port = o.get("port", int, 4000)
    if not 0 <= port <= 65535:
        raise doc.error("server.port", "must be 0..65535")
    mb = o.positive("max_body_mb", float, 32.0)
    d = ConnectionLimits()
    header_kb = o.positive("max_header_kb", float, d.max_header / 1024)
    limits = ConnectionLimits(
        max_body=int(mb * 1024 * 1024),
        max_url=int(header_kb * 1024),
        max_header=int(header_kb * 1024),
        max_head=int(o.positive("max_head_kb", float, d.max_head / 1024) * 1024),
        max_headers=o.positive("max_headers", int, d.max_headers),
        head_timeout=o.positive("header_timeout", float, d.head_timeout),
        body_timeout=o.positive("body_timeout", float, d.body_timeout),
        idle_timeout=o.positive("idle_timeout", float, d.idle_timeout),
        send_timeout=o.positive("send_timeout", float, d.send_timeout),
        max_connections=o.positive("max_connections", int, d.max_connections),
    )
    return ServerSpec(
        host=o.get("host", str, "127.0.0.1"),
        port=port,
        workers=o.positive("workers", int, 1),
        max_body_bytes=limits.max_body,
        allow_public_without_key=o.get("allow_public_without_key", bool, False),
        limits=limits,
    )


def _provider(doc: _Doc, path: str, name: str, v: Any) -> ProviderSpec:
    o = _Obj(doc, path, v, ("kind", "base_url", "api_key", "auth", "api_version", "headers"), ("kind",))
    kind = o.get("kind", str)
    k = KINDS.get(kind)
    if k is None:
        raise doc.error(f"{path}.kind", f"unknown provider kind '{kind}' (kinds: {', '.join(KINDS)})")
    base = o.get("base_url", str, k.base_url)
    if base is None:
        raise doc.error(path, f"provider kind '{kind}' needs a base_url")
    if not base.startswith(("http://", "https://")):
        raise doc.error(f"{path}.base_url", "must start with http:// or https://")
    auth = o.get("auth", str, k.auth)
    if auth not in AUTH_STYLES:
        raise doc.error(f"{path}.auth", f"unknown auth style '{auth}' (styles: {', '.join(AUTH_STYLES)})")
    headers = o.get("headers", dict, {})
    for hk, hv in headers.items():
        if not isinstance(hv, str):
            raise doc.error(f"{path}.headers.{hk}", "header values must be strings")
    api_version = o.get("api_version", str)
    if kind == "azure" and api_version is None and not base.rstrip("/").endswith("/openai/v1"):
        raise doc.error(path, "azure needs api_version, or a base_url ending in /openai/v1")
    return ProviderSpec(
        name=name, kind=kind, wire=k.wire, base_url=base.rstrip("/"), api_key=o.get("api_key", str),
        auth=auth, api_version=api_version, headers=tuple((hk.lower(), hv) for hk, hv in headers.items()),
    )


def _model(doc: _Doc, path: str, v: Any, providers: dict[str, ProviderSpec], default_output: int = 4096) -> ModelSpec:
    o = _Obj(doc, path, v, ("name", "provider", "model", "price", "context_window", "max_output", "vision",
                            "limits", "timeout", "fallbacks", "prompt_cache", "api"), ("name", "provider"))
    prompt_cache = o.get("prompt_cache", (str, bool), "auto")
    if isinstance(prompt_cache, bool):  # YAML reads a bare off / on as a boolean
        prompt_cache = "auto" if prompt_cache else "off"
    if prompt_cache not in ("auto", "off"):
        raise doc.error(f"{path}.prompt_cache", f"must be auto or off, not '{prompt_cache}'")
    name = o.get("name", str)
    pname = o.get("provider", str)
    if pname not in providers:
        raise doc.error(f"{path}.provider", f"unknown provider '{pname}' (providers: {', '.join(providers) or 'none'})")
    upstream = o.get("model", str, name)
    entry = catalog.lookup(upstream) or catalog.lookup(name)
    price_raw = o.get("price", dict)
    if price_raw is not None:
        po = _Obj(doc, f"{path}.price", price_raw, ("input", "output", "cached_input", "cache_write",
                                                             "cache_write_1h"),
                  ("input", "output"))
        vals = {k: _money(doc, f"{path}.price.{k}", x) for k, x in po.v.items() if x is not None}
        price, priced_by = Price(**vals), "config"
    elif entry is not None:
        price, priced_by = entry.price, "catalog"
    else:
        raise doc.error(path, f"no price for '{upstream}' in the built-in catalog: give price: {{input, output}} "
                              "(USD per 1M tokens; 0 for a free local model)")
    api = _api(doc, path, o.get("api", str), providers[pname], entry)
    lo = _Obj(doc, f"{path}.limits", o.get("limits", dict, {}), ("rpm", "tpm", "concurrency", "queue"))
    to = _Obj(doc, f"{path}.timeout", o.get("timeout", dict, {}), ("total", "first_token", "connect"))
    return ModelSpec(
        name=name,
        provider=providers[pname],
        upstream=upstream,
        price=price,
        context_window=o.positive("context_window", int, entry.context_window if entry else None),
        max_output=o.positive("max_output", int, entry.max_output if entry else None),
        vision=o.get("vision", bool, entry.vision if entry else True),
        limits=Limits(lo.positive("rpm", int), lo.positive("tpm", int), lo.positive("concurrency", int),
                      lo.get("queue", int, 0)),
        timeout=Timeout(to.positive("total", float, 600.0), to.positive("first_token", float),
                        to.positive("connect", float, 10.0)),
        fallbacks=o.names("fallbacks"),
        priced_by=priced_by,
        default_output=default_output,
        prompt_cache=prompt_cache,
        api=api,
    )


def _api(doc: _Doc, path: str, v: str | None, provider: ProviderSpec, entry) -> str:
    """``api: chat | responses``: which OpenAI API a model is reached through. Unset, a model the
    catalog knows as Responses-only (``gpt-5.5-pro``) takes ``responses`` at OpenAI and Azure, and
    everything else ``chat``, the API every OpenAI-compatible server speaks."""
    if v is None:
        native = provider.kind in ("openai", "azure") and entry is not None and entry.api == "responses"
        return "responses" if native else "chat"
    if v not in ("chat", "responses"):
        raise doc.error(f"{path}.api", f"must be chat or responses, not '{v}'")
    if v == "responses" and provider.wire != "openai":
        raise doc.error(f"{path}.api", f"the Responses API is OpenAI's: provider '{provider.name}' speaks the "
                                       f"{provider.wire} API")
    return v


_ROUTE_KEYS = ("name", "policy", "fallbacks", "hedge", "fallback_on", "stream", "degrade", "escalate",
               "prefer_other_provider", "cache", "pace")
_FALLBACK_ON = ("content_filter", "bad_request")


def _route(doc: _Doc, path: str, v: Any) -> RouteSpec:
    o = _Obj(doc, path, v, _ROUTE_KEYS, ("name", "policy"))
    name = o.get("name", str)
    kind, models, w, spec = _policy(doc, f"{path}.policy", o.get("policy", dict))
    fallback_on = o.names("fallback_on")
    for i, k in enumerate(fallback_on):
        if k not in _FALLBACK_ON:
            raise doc.error(f"{path}.fallback_on[{i}]", f"unknown trigger '{k}' (triggers: {', '.join(_FALLBACK_ON)})")
    so = _Obj(doc, f"{path}.stream", o.get("stream", dict, {}), ("on_cut",))
    on_cut = so.get("on_cut", str, "error")
    if on_cut not in ("error", "resume"):
        raise doc.error(f"{path}.stream.on_cut", "must be 'error' or 'resume'")
    do = _Obj(doc, f"{path}.degrade", o.get("degrade", dict, {}), ("reply",))
    eo = _Obj(doc, f"{path}.escalate", o.get("escalate", dict, {}), ("webhook",))
    hook = eo.get("webhook", str)
    if hook is not None and not hook.startswith(("http://", "https://")):
        raise doc.error(f"{path}.escalate.webhook", "must be an http:// or https:// URL")
    return RouteSpec(
        name=name, policy=kind, models=models, weights=w, spec=spec, fallbacks=o.names("fallbacks"),
        hedge=_hedge(doc, f"{path}.hedge", o.get("hedge", dict)), fallback_on=frozenset(fallback_on),
        on_cut=on_cut, degrade_reply=do.get("reply", str), escalate_webhook=hook,
        prefer_other_provider=o.get("prefer_other_provider", bool, True),
        cache=o.get("cache", dict),  # raw here; resolved against the top-level cache section
        pace=_pace(doc, f"{path}.pace", o.get("pace", dict), kind, spec), prefer=_prefer(doc, f"{path}.policy", o),
    )


def _prefer(doc: _Doc, path: str, o: _Obj) -> str | None:
    v = (o.v.get("policy") or {}).get("prefer")
    if v is not None and v != "headroom":
        raise doc.error(f"{path}.prefer", f"must be headroom, not {v!r}")
    return v


def _pace(doc: _Doc, path: str, v: dict | None, kind: str, spec: PolicySpec | None):
    """``pace: {usd: 50, per: day, controller: pid|multiplicative, interval: 60}``: on a policy with
    a price of cost or a quality bar to steer (a bandit, cheapest, a learned policy with a tradeoff,
    or a cascade starting by one)."""
    if v is None:
        return None
    from .routing.pacing import PERIODS, PaceSpec

    steered = spec.start if kind == "cascade" and spec is not None and spec.start is not None else spec
    if kind not in ("bandit", "cheapest") and not (
            steered is not None and steered.kind in ("bandit", "learned", "cheapest")
            and (steered.kind != "learned" or steered.tradeoff is not None)):
        raise doc.error(path, f"pacing steers a price of cost or a quality bar: a bandit, cheapest, a learned policy "
                              f"with a tradeoff, or a cascade starting by one; not '{kind}'")
    po = _Obj(doc, path, v, ("usd", "per", "controller", "interval"), ("usd", "per"))
    per = po.get("per", str)
    if per not in PERIODS:
        raise doc.error(f"{path}.per", f"must be one of {', '.join(PERIODS)}, not '{per}'")
    controller = po.get("controller", str, "pid")
    if controller not in ("multiplicative", "pid"):
        raise doc.error(f"{path}.controller", f"must be multiplicative or pid, not '{controller}'")
    return PaceSpec(usd=po.positive("usd", float, None), per=per, controller=controller,
                    interval=po.positive("interval", float, 60.0))


_POLICY_KEYS = {
    "first": ("kind", "models"),
    "weighted": ("kind", "models"),
    "cheapest": ("kind", "models", "min_quality", "quality", "router", "aliases", "output_tokens", "task_tag"),
    "learned": ("kind", "models", "router", "min_quality", "tradeoff", "aliases", "task_tag", "costs"),
    "rules": ("kind", "models", "rules", "default"),
    "cascade": ("kind", "models", "checks", "start"),
    "least-latency": ("kind", "models", "tolerance", "explore", "stale"),
    "least-busy": ("kind", "models"),
    "bandit": ("kind", "models", "quality", "tradeoff", "explore", "prior", "context_tag", "context", "router", "seed"),
    "experiment": ("kind", "arms", "split", "ramp", "by", "min_requests", "alpha", "tolerance", "secret"),
}
_POLICY_KEYS = {k: (*v, "prefer") for k, v in _POLICY_KEYS.items()}  # prefer: headroom, any kind
_RULE_CONDITIONS = ("tags", "user", "tokens_over", "tokens_under", "tools", "images", "json", "keywords", "regex")
_CHECK_KEYS = ("refusal", "json", "tools", "arithmetic", "agree", "logprob", "scorer", "judge")


def _policy(doc: _Doc, path: str, v: Any, chain: tuple[str, ...] | None = None
            ) -> tuple[str, tuple[str, ...], tuple[float, ...], PolicySpec | None]:
    """A route's ``policy:``: the kind, its models (in order), weights, and the kind's settings.
    ``chain``: the cascade's models, when this is the policy a cascade starts by."""
    nested = chain is not None
    kind = _Obj(doc, path, v, tuple({k for ks in _POLICY_KEYS.values() for k in ks})).get("kind", str)
    if kind is None:
        raise doc.error(path, "missing required key 'kind'")
    if kind not in POLICY_KINDS or (nested and kind == "cascade"):
        kinds = [k for k in POLICY_KINDS if not (nested and k == "cascade")]
        raise doc.error(f"{path}.kind", f"unknown policy kind '{kind}' (kinds: {', '.join(kinds)})")
    po = _Obj(doc, path, v, _POLICY_KEYS[kind])
    if kind == "weighted":
        wm = po.get("models", dict, {})
        weights = []
        for m, w in wm.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise doc.error(f"{path}.models.{m}", "weights must be non-negative numbers")
            weights.append(float(w))
        if not wm or sum(weights) <= 0:
            raise doc.error(f"{path}.models", "needs at least one model with a weight above 0")
        return kind, tuple(wm), tuple(weights), None
    if kind in ("least-latency", "least-busy", "bandit"):
        from .routing import settings as policies

        if kind != "bandit":
            return policies.live(po, path, kind, doc.error)
        got = policies.bandit(po, path, doc.error)
        return (*got[:3], replace(got[3], router=_path(doc, got[3].router)))
    if kind == "experiment":
        from .routing import experiment

        return kind, (), (), PolicySpec(kind, experiment=experiment.parse(po, path, doc.error))
    models = po.names("models") or chain or ()
    if not models and kind != "rules":
        raise doc.error(f"{path}.models", "needs at least one model")
    if kind == "first":
        return kind, models, (), PolicySpec(kind, models) if nested else None
    spec: dict[str, Any] = {"kind": kind, "models": models}
    if kind in ("cheapest", "learned"):
        spec["min_quality"] = _share(doc, po, "min_quality")
        spec["router"] = _path(doc, po.get("router", str))
        spec["aliases"] = tuple((k, str(a)) for k, a in po.get("aliases", dict, {}).items())
        spec["task_tag"] = po.get("task_tag", str, "task")
        if not spec["task_tag"].strip():
            raise doc.error(f"{path}.task_tag", "must name a request tag")
    if kind == "cheapest":
        q = po.get("quality", dict, {})
        for m, x in q.items():
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1:
                raise doc.error(f"{path}.quality.{m}", "must be an expected quality between 0 and 1")
        spec["quality"] = tuple((m, float(x)) for m, x in q.items())
        spec["output_tokens"] = po.positive("output_tokens", int, 256)
        if spec["min_quality"] is None:
            raise doc.error(path, "missing required key 'min_quality' (the least expected quality to accept)")
        if spec["router"] is None:
            missing = [m for m in models if m not in q]
            if missing:
                raise doc.error(f"{path}.quality", f"no expected quality for {', '.join(missing)} "
                                                   "(give every model one, or a router)")
    elif kind == "learned":
        spec["tradeoff"] = po.get("tradeoff", float)
        if spec["tradeoff"] is not None and spec["tradeoff"] < 0:
            raise doc.error(f"{path}.tradeoff", "must be 0 or more")
        if spec["router"] is None:
            raise doc.error(path, "missing required key 'router' (a file from `switchman train`)")
        if (spec["min_quality"] is None) == (spec["tradeoff"] is None):
            raise doc.error(path, "give exactly one of min_quality or tradeoff")
        spec["costs"] = po.get("costs", str)
        if spec["costs"] not in (None, "router", "prices"):
            raise doc.error(f"{path}.costs", f"must be router or prices, not '{spec['costs']}'")
    elif kind == "rules":
        rules = po.get("rules", list, [])
        spec["rules"] = tuple(_rule(doc, f"{path}.rules[{i}]", r, i) for i, r in enumerate(rules))
        if "default" in po.v:
            spec["default"] = _target(doc, f"{path}.default", _Obj(doc, f"{path}.default", po.v["default"],
                                                                    ("to", "route")), (), "default")
        elif models:
            spec["default"] = RuleSpec((), models[0], label="default")
        else:
            raise doc.error(path, "missing required key 'default' (where requests no rule matches go)")
        if not spec["rules"]:
            raise doc.error(f"{path}.rules", "needs at least one rule")
    elif kind == "cascade":
        spec["checks"] = _checks(doc, f"{path}.checks", po.get("checks", dict, {}))
        if "start" in po.v:
            skind, _, _, spec["start"] = _policy(doc, f"{path}.start", po.v["start"], chain=models)
            if skind == "weighted":
                raise doc.error(f"{path}.start.kind", "a cascade starts by a cheapest, learned, bandit, rules or first policy")
            bad = [m for m in spec["start"].models if m not in models]
            if bad:
                raise doc.error(f"{path}.start.models", f"{', '.join(bad)} not in the cascade's models")
        if len(models) < 2:
            raise doc.error(f"{path}.models", "a cascade needs at least two models, cheapest first")
    return kind, models, (), PolicySpec(**spec)


def _share(doc: _Doc, o: _Obj, key: str) -> float | None:
    v = o.get(key, float)
    if v is not None and not 0 <= v <= 1:
        raise doc.error(o.sub(key), "must be between 0 and 1")
    return v


def _rule(doc: _Doc, path: str, v: Any, i: int) -> RuleSpec:
    o = _Obj(doc, path, v, ("when", "to", "route", "name"), ("when",))
    wo = _Obj(doc, f"{path}.when", o.get("when", dict), _RULE_CONDITIONS)
    when: list[tuple[str, object]] = []
    for c in _RULE_CONDITIONS:
        if c not in wo.v:
            continue
        sub = f"{path}.when.{c}"
        if c == "tags":
            tags = wo.get(c, dict)
            when.append((c, tuple((str(k), tuple(map(str, t)) if isinstance(t, list) else (str(t),))
                                  for k, t in tags.items())))
        elif c == "user":
            u = wo.get(c, (str, list))
            when.append((c, tuple(map(str, u)) if isinstance(u, list) else (u,)))
        elif c in ("tokens_over", "tokens_under"):
            when.append((c, wo.positive(c, int)))
        elif c in ("tools", "images", "json"):
            when.append((c, wo.get(c, bool)))
        elif c == "keywords":
            words = wo.names(c)
            if not words:
                raise doc.error(sub, "needs at least one keyword")
            when.append((c, re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)))
        else:
            try:
                when.append((c, re.compile(wo.get(c, str))))
            except re.error as e:
                raise doc.error(sub, f"not a regular expression: {e}") from None
    if not when:
        raise doc.error(f"{path}.when", f"needs at least one condition ({', '.join(_RULE_CONDITIONS)})")
    return _target(doc, path, o, tuple(when), o.get("name", str) or f"rule {i + 1}")


def _target(doc: _Doc, path: str, o: _Obj, when: tuple, label: str) -> RuleSpec:
    to, route = o.get("to", str), o.get("route", str)
    if (to is None) == (route is None):
        raise doc.error(path, "give exactly one of 'to' (a model) or 'route' (another route)")
    return RuleSpec(when, to or route, route=route is not None, label=label)


def _checks(doc: _Doc, path: str, v: dict) -> ChecksSpec:
    o = _Obj(doc, path, v, _CHECK_KEYS)
    d = ChecksSpec()
    lp = o.get("logprob", float)
    if lp is not None and not 0 < lp < 1:
        raise doc.error(f"{path}.logprob", "must be a probability between 0 and 1 (the least mean token probability)")
    scorer, smin = None, d.scorer_min
    if "scorer" in o.v:
        so = _Obj(doc, f"{path}.scorer", o.v["scorer"], ("path", "min"), ("path",))
        scorer, smin = _path(doc, so.get("path", str)), _share(doc, so, "min") if "min" in so.v else d.scorer_min
    judge, jmin = None, d.judge_min
    if "judge" in o.v:
        jo = _Obj(doc, f"{path}.judge", o.v["judge"], ("model", "min"), ("model",))
        judge, jmin = jo.get("model", str), jo.get("min", float, d.judge_min)
        if not 0 <= jmin <= 10:
            raise doc.error(f"{path}.judge.min", "must be a grade between 0 and 10")
    agree = o.get("agree", int, 0)
    if agree < 0:
        raise doc.error(f"{path}.agree", "must be how many earlier answers must agree (0 = off)")
    return ChecksSpec(refusal=o.get("refusal", bool, True), json=o.get("json", bool, True),
                      tools=o.get("tools", bool, True), arithmetic=o.get("arithmetic", bool, False),
                      agree=agree, logprob=lp, scorer=scorer, scorer_min=smin, judge=judge, judge_min=jmin)


def _resolve_policy(doc: _Doc, path: str, p: PolicySpec, models: dict, routes: dict) -> None:
    """Every name a policy mentions exists, and every file it reads loads."""
    def model(sub: str, n: str) -> None:
        if n not in models:
            raise doc.error(sub, f"unknown model '{n}' (models: {', '.join(models) or 'none'})")

    for n in p.models:
        model(f"{path}.models", n)
    for arm, target in p.experiment.arms if p.experiment is not None else ():
        if target not in models and target not in routes:
            raise doc.error(f"{path}.arms.{arm}", f"'{target}' is neither a route nor a model")
    for m, _ in p.quality:
        if m not in p.models:
            raise doc.error(f"{path}.quality.{m}", f"'{m}' is not one of this policy's models")
    for m, _ in p.aliases:
        model(f"{path}.aliases.{m}", m)
    for i, r in enumerate((*p.rules, *([p.default] if p.default else []))):
        sub = f"{path}.default" if r is p.default else f"{path}.rules[{i}]"
        if r.route and r.to not in routes:
            raise doc.error(f"{sub}.route", f"unknown route '{r.to}' (routes: {', '.join(routes) or 'none'})")
        if not r.route:
            model(f"{sub}.to", r.to)
    if p.router is not None:
        from .routing.learned import Router, RouterFileError

        try:
            router = Router.load(p.router)
        except (OSError, RouterFileError) as e:
            raise doc.error(f"{path}.router", f"cannot load router: {e}") from None
        mapped = dict(p.aliases)  # a configured name -> the router's name for it
        if not any(mapped.get(m, m) in router.models for m in p.models):
            raise doc.error(f"{path}.router", f"the router knows none of the policy's models (it knows "
                                              f"{', '.join(router.models)}; map names with aliases)")
        for m, a in p.aliases:
            if a not in router.models:
                raise doc.error(f"{path}.aliases.{m}", f"the router does not know '{a}'")
        if p.context == "cluster" and not router.clusters:
            raise doc.error(f"{path}.context", f"the router {p.router} has no prompt clusters: train it with "
                                               "switchman train --clusters K")
    if p.checks is not None:
        if p.checks.judge is not None:
            model(f"{path}.checks.judge.model", p.checks.judge)
        if p.checks.scorer is not None:
            from .routing.scorer import AnswerScorer, ScorerFileError

            try:
                AnswerScorer.load(p.checks.scorer)
            except (OSError, ScorerFileError) as e:
                raise doc.error(f"{path}.checks.scorer.path", f"cannot load answer scorer: {e}") from None
    if p.start is not None:
        _resolve_policy(doc, f"{path}.start", p.start, models, routes)


def _path(doc: _Doc, p: str | None) -> str | None:
    """A file named in the config: relative to the config file's folder."""
    if p is None or os.path.isabs(p) or not os.path.exists(doc.file):
        return p
    return os.path.join(os.path.dirname(os.path.abspath(doc.file)), p)


def _no_route_cycles(doc: _Doc, routes: dict) -> None:
    """A rules policy may send to another route, but never, through any chain, back to itself."""
    def targets(r: RouteSpec) -> list[str]:
        p = r.spec
        out: list[str] = []
        while p is not None:
            out += [x.to for x in (*p.rules, *([p.default] if p.default else [])) if x.route]
            out += [t for _, t in (p.experiment.arms if p.experiment else ()) if t in routes]
            p = p.start
        return out

    for i, r in enumerate(routes.values()):
        seen, todo = set(), targets(r)
        while todo:
            t = todo.pop()
            if t == r.name:
                raise doc.error(f"routes[{i}].policy", f"route '{r.name}' sends requests back to itself (through rules or experiment arms)")
            if t not in seen:
                seen.add(t)
                todo += targets(routes[t])


def _hedge(doc: _Doc, path: str, v: dict | None) -> HedgeSpec | None:
    if v is None:
        return None
    o = _Obj(doc, path, v, ("after", "max"), ("after",))
    after = o.v["after"]
    if isinstance(after, str) and re.fullmatch(r"p(\d{1,2}(\.\d+)?)", after):
        spec = HedgeSpec(percentile=float(after[1:]), max=o.positive("max", int, 2))
    elif isinstance(after, (int, float)) and not isinstance(after, bool) and after > 0:
        spec = HedgeSpec(after=float(after), max=o.positive("max", int, 2))
    else:
        raise doc.error(f"{path}.after", "must be seconds (e.g. 0.5) or a latency percentile (e.g. p95)")
    if spec.max < 2:
        raise doc.error(f"{path}.max", "must be at least 2 (the first attempt and one hedge)")
    return spec


def _auth(doc: _Doc, v: dict) -> AuthSpec:
    o = _Obj(doc, "auth", v, ("admin_key", "keys_required"))
    key = o.get("admin_key", str)
    return AuthSpec(admin_key=key or None, keys_required=o.get("keys_required", bool, False))


def from_env(env: Mapping[str, str]) -> Config:
    """The config `switchman serve` runs with when there is no file: one provider per key found,
    a few current models of each (priced from the catalog), and a route ``auto`` over them."""
    providers: dict[str, ProviderSpec] = {}
    models: dict[str, ModelSpec] = {}
    for kind, names in ENV_DEFAULT_MODELS.items():
        k = KINDS[kind]
        key = env.get(k.env_key or "")
        if not key:
            continue
        prov = ProviderSpec(name=kind, kind=kind, wire=k.wire, base_url=k.base_url or "", api_key=key, auth=k.auth)
        providers[kind] = prov
        for n in names:
            e = catalog.lookup(n)
            if e is None:
                continue
            models[n] = ModelSpec(name=n, provider=prov, upstream=n, price=e.price, context_window=e.context_window,
                                  max_output=e.max_output, vision=e.vision, priced_by="catalog")
    routes = {}
    if models:
        # Cheapest first: the first model of each provider, then the rest.
        order = sorted(models, key=lambda n: models[n].price.input + models[n].price.output)
        routes["auto"] = RouteSpec(name="auto", policy="first", models=tuple(order))
    return Config(server=ServerSpec(), providers=providers, models=models, routes=routes,
                  auth=AuthSpec(admin_key=env.get("SWITCHMAN_ADMIN_KEY") or None), source="<environment>")
