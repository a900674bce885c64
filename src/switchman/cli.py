"""The ``switchman`` command. Exit codes: 0 success, 1 runtime failure, 2 usage or config error."""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from .errors import ConfigError


def _config(path: str | None):
    from . import configfile

    return configfile.load(path)


def cmd_serve(a: argparse.Namespace) -> int:
    from .serve import main_serve

    return main_serve(_config(a.config), a.host, a.port, a.workers, a.allow_public, a.log_level)


def cmd_check(a: argparse.Namespace) -> int:
    cfg = _config(a.config)
    print(f"config {cfg.source}: ok")
    print(f"\nproviders ({len(cfg.providers)})")
    for p in cfg.providers.values():
        key = "key set" if p.api_key else "no key"
        print(f"  {p.name:<16} kind={p.kind:<10} wire={p.wire:<9} {p.base_url}  ({key})")
    print(f"\nmodels ({len(cfg.models)})            USD per 1M tokens: input / output / cached input")
    for m in cfg.models.values():
        pr = m.price
        cached = pr.cached_input if pr.cached_input is not None else pr.input
        ctx = f"{m.context_window:,}" if m.context_window else "?"
        fb = f"  fallbacks: {', '.join(m.fallbacks)}" if m.fallbacks else ""
        api = "  via the Responses API" if m.api == "responses" else ""
        print(f"  {m.name:<22} {m.provider.name}/{m.upstream:<28} {pr.input:>8} / {pr.output:>8} / {cached:>8}"
              f"  ctx {ctx:>9}  ({m.priced_by}){fb}{api}")
    print(f"\nroutes ({len(cfg.routes)})")
    for r in cfg.routes.values():
        if r.policy == "weighted":
            plan = ", ".join(f"{m}={w:g}" for m, w in zip(r.models, r.weights))
        else:
            plan = " -> ".join(r.models)
        fb = f"  fallbacks: {' -> '.join(r.fallbacks)}" if r.fallbacks else ""
        print(f"  {r.name:<16} {r.policy}{': ' + plan if plan else ''}{fb}")
        for line in [*_policy_lines(r.spec), *_route_lines(r)]:
            print(f"  {'':<16}   {line}")
    if cfg.auth.admin_key:
        print("\nauth: admin key set")
    return 0


def _route_lines(r) -> list[str]:
    """A route's adaptive and caching settings, one line each, for ``check``."""
    out = []
    if r.prefer:
        out.append(f"prefer: {r.prefer}")
    if r.pace is not None:
        out.append(f"pace: ${r.pace.usd:g} per {r.pace.per} ({r.pace.controller})")
    c = r.cache
    if c is not None:
        sem = (f", semantic (max_error {c.semantic.max_error:g}, {c.semantic.embedder}"
               f"{', judge ' + c.semantic.judge if c.semantic.judge else ''})" if c.semantic else "")
        out.append(f"cache: {'on' if c.enabled else 'off'} (scope {c.scope}, ttl {c.ttl:g}s){sem}; "
                   f"prompt cache ttl {c.prompt_ttl}{', sticky' if c.sticky else ''}")
    return out


def _policy_lines(p) -> list[str]:
    """A policy's own settings, one line each, for ``check``."""
    if p is None:
        return []
    out = []
    if p.kind in ("cheapest", "learned"):
        bar = f"min_quality {p.min_quality:g}" if p.min_quality is not None else f"tradeoff {p.tradeoff:g}"
        src = (f"router {p.router} (task from tag '{p.task_tag}')" if p.router
               else "quality " + ", ".join(f"{m}={q:g}" for m, q in p.quality))
        costs = f"; costs from {p.costs or 'the router, else prices'}" if p.kind == "learned" else ""
        out.append(f"{p.kind}: {bar}; {src}{costs}")
    if p.kind == "bandit":
        prior = (f"router {p.router}" if p.router else
                 "quality " + ", ".join(f"{m}={q:g}" for m, q in p.quality) if p.quality else "no prior")
        ctx = f"; learns per tag '{p.context_tag}'" if p.context_tag else "; learns per prompt cluster" \
            if p.context == "cluster" else ""
        seed = f"; seed {p.seed}" if p.seed is not None else ""
        out.append(f"bandit: tradeoff {p.tradeoff if p.tradeoff is not None else 0:g}, explore {p.explore:g}, "
                   f"prior weight {p.prior:g} ({prior}){ctx}{seed}")
    for i, r in enumerate((*p.rules, *([p.default] if p.default else []))):
        cond = ", ".join(f"{c}={getattr(v, 'pattern', v)}" for c, v in r.when) or "otherwise"
        out.append(f"{r.label}: {cond} -> {'route ' if r.route else ''}{r.to}")
    if p.checks is not None:
        c = p.checks
        on = [n for n in ("refusal", "json", "tools", "arithmetic") if getattr(c, n)]
        on += [f"agree>={c.agree}"] if c.agree else []
        on += [f"logprob>={c.logprob:g}"] if c.logprob is not None else []
        on += [f"scorer>={c.scorer_min:g} ({c.scorer})"] if c.scorer else []
        on += [f"judge {c.judge}>={c.judge_min:g}"] if c.judge else []
        out.append(f"checks: {', '.join(on) or 'none'}")
    if p.experiment is not None:
        e = p.experiment
        arms = ", ".join(f"{a}={t}" for a, t in e.arms)
        how = (f"ramp {' -> '.join(f'{x:g}%' for x in e.ramp)} every {e.min_requests} candidate requests, "
               f"alpha {e.alpha:g}" if e.ramp else "split " + "/".join(f"{x:g}" for x in e.split))
        out.append(f"arms: {arms}; {how}; sticky by {e.by or 'episode, user or key'}")
    if p.start is not None:
        out.append(f"starts by {p.start.kind}:")
        out += ["  " + x for x in _policy_lines(p.start)]
    return out


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import main_demo

    return main_demo(a.port, a.exit, a.host, a.log_level)


_OFFLINE = ("eval", "train")  # commands whose own parsers live with the evaluator
_ACCOUNTING = ("keys", "spend")  # ... and with the ledger


def _offline(name: str, argv: list[str]) -> int:
    try:
        from .eval import command
    except ImportError as e:
        print(f"switchman {name}: not available ({e}); install with: pip install 'switchman[eval]'", file=sys.stderr)
        return 1
    return getattr(command, f"{name}_main")(argv)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchman", description="LLM model router and gateway")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", help="config file (default ./switchman.yaml; without one, provider keys from the environment)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)
    s.add_argument("--allow-public", action="store_true", help="serve beyond loopback with no key configured")
    s.add_argument("--log-level", default="WARNING")
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("check", help="validate a config and print what it resolves to")
    c.add_argument("--config")
    c.set_defaults(func=cmd_check)

    d = sub.add_parser("demo", help="run the gateway over a simulated fleet on loopback (no keys needed)")
    d.add_argument("--port", type=int, default=4000)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--exit", action="store_true", help="exit after the sample requests instead of serving")
    d.add_argument("--log-level", default="WARNING", help="INFO shows one access-log line per request")
    d.set_defaults(func=cmd_demo)

    sub.add_parser("eval", help="replay outcome data through routing strategies (switchman eval --help)")
    sub.add_parser("train", help="fit a learned router, or a cascade's answer scorer, from outcome data (switchman train --help)")
    sub.add_parser("keys", help="create, list and revoke virtual keys (switchman keys --help)")
    sub.add_parser("spend", help="spend by model, key, user, tag, route or day (switchman spend --help)")
    sub.add_parser("import-litellm", help="print a switchman config translated from a LiteLLM config.yaml")
    sub.add_parser("experiments", help="a running gateway's experiments, arm by arm (switchman experiments --help)")
    return p


# Optional dependencies and the extra that brings each.
_EXTRAS = {"redis": "redis", "asyncpg": "postgres", "sklearn": "eval", "pyarrow": "eval", "matplotlib": "eval"}


def main(argv: list[str] | None = None) -> int:
    """Run one command. Whatever goes wrong ends in one line on stderr and an exit code, never a
    traceback (set ``SWITCHMAN_DEBUG=1`` to see one)."""
    try:
        return _main(argv)
    except ConfigError as e:
        print(f"switchman: config error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        top = (e.name or "").split(".")[0]
        extra = _EXTRAS.get(top)
        if extra is not None:
            print(f"switchman: this needs {top}, which is not installed: pip install 'switchman[{extra}]'",
                  file=sys.stderr)
        elif e.name is None and "pip install" in str(e):  # ours, already saying what to install
            print(f"switchman: {e}", file=sys.stderr)
        else:
            return _unexpected(e)
        return 2
    except OSError as e:
        print(f"switchman: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception as e:  # noqa: BLE001 - the one place that turns any failure into a line
        return _unexpected(e)


def _unexpected(e: BaseException) -> int:
    if os.environ.get("SWITCHMAN_DEBUG"):
        traceback.print_exc()
    print(f"switchman: error: {type(e).__name__}: {e}", file=sys.stderr)
    return 1


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in _OFFLINE:
        return _offline(argv[0], argv[1:])
    if argv and argv[0] == "import-litellm":
        from .migrate.litellm import import_main

        return import_main(argv[1:])
    if argv and argv[0] == "experiments":
        from .routing.experiments_cli import experiments_main

        return experiments_main(argv[1:])
    if argv and argv[0] in _ACCOUNTING:
        from .accounting import cli as accounting

        return getattr(accounting, f"{argv[0]}_main")(argv[1:])
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
