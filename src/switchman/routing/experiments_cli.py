"""``switchman experiments``: each experiment of a running gateway, arm by arm, with its decisions.

    switchman experiments [--config switchman.yaml] [--url http://127.0.0.1:4000] [--key ADMIN_KEY] [--json]

It asks the gateway (``GET /admin/experiments``): the rollout state lives in the server. The URL
defaults to the config's ``server`` host and port, the key to ``auth.admin_key`` (or
``SWITCHMAN_ADMIN_KEY``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def experiments_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="switchman experiments", description=__doc__.split("\n")[0])
    p.add_argument("--config")
    p.add_argument("--url")
    p.add_argument("--key")
    p.add_argument("--json", action="store_true", help="the server's answer as it is")
    a = p.parse_args(argv)
    url, key = a.url, a.key or os.environ.get("SWITCHMAN_ADMIN_KEY")
    if url is None or key is None:
        from .. import configfile

        cfg = configfile.load(a.config)
        host = cfg.server.host if cfg.server.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        url = url or f"http://{host}:{cfg.server.port}"
        key = key or cfg.auth.admin_key
    req = urllib.request.Request(url.rstrip("/") + "/admin/experiments",
                                 headers={"authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = json.loads(r.read())["data"]
    except urllib.error.HTTPError as e:
        print(f"switchman experiments: {url} answered {e.code}: {e.read()[:300].decode(errors='replace')}",
              file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"switchman experiments: cannot reach the gateway at {url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(data, indent=2))
        return 0
    if not data:
        print("no experiments configured (a route with policy: {kind: experiment, ...})")
    for e in data:
        print(render(e))
    return 0


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def _ival(iv, fmt) -> str:
    return "" if not iv else f" [{fmt(iv[0])}, {fmt(iv[1])}]"


def render(e: dict) -> str:
    head = f"experiment {e['route']}"
    if e.get("ramp"):
        head += f": ramp {e['ramp']} at step {e['step']}" + (f", ROLLED BACK: {e['rolled_back']}" if e["rolled_back"] else "")
    rows = [("ARM", "TARGET", "SHARE", "REQUESTS", "ERRORS", "P95 MS", "COST/REQ", "FEEDBACK")]
    for name, a in e["arms"].items():
        usd = (lambda v: f"${v:.6f}")
        rows.append((name, a["target"], f"{a['share']:g}%", str(a["requests"]),
                     _pct(a["error_rate"]) + _ival(a["error_rate_interval"], _pct),
                     "-" if a["latency_p95_ms"] is None else f"{a['latency_p95_ms']:.0f}",
                     ("-" if a["cost_per_request"] is None else usd(a["cost_per_request"]))
                     + _ival(a["cost_per_request_interval"], usd),
                     "-" if a["feedback_mean"] is None else f"{a['feedback_mean']:.2f} (n={a['feedback']})"
                     + _ival(a["feedback_interval"], lambda v: f"{v:.2f}")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for h in e.get("history") or ():
        lines.append(f"  {h['action']:<8} at {h['candidate_share']:g}%: {h['why']}")
    return "\n".join(lines)
