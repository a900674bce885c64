"""What ``switchman eval`` writes: the terminal table, ``summary.json``, ``decisions.jsonl``,
``report.html`` and the cost–quality plot ``cost_quality.png`` beside it."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np
import orjson

from ..outcomes import OutcomeTable
from .replay import Result


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _money(x, unit: str) -> str:
    if x is None:
        return "—"
    return f"${x:,.3f}" if unit == "usd" else f"{x:,.0f}"


def rows(summary: dict) -> list[list[str]]:
    """The table's rows: one per strategy, at its chosen operating point."""
    unit = summary["cost_unit"]
    two = len(summary["models"]) == 2
    out = []
    for s in summary["strategies"]:
        p = next(p for p in s["points"] if p["point"] == s["chosen"]["point"])
        ci = p.get("quality_ci")
        q = f"{p['quality']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else "")
        r = [
            s["name"],
            p["point"] or "",
            q,
            _money(p["cost"], unit),
            _pct(p["cost_share"]),
            "—" if s["aiq"] is None else f"{s['aiq']:.3f}",
            *(_pct(s["cost_to_reach"][k]) for k in ("90%", "95%", "99%")),
        ]
        if "latency_ms" in p:
            r.append(f"{p['latency_ms']:.0f}")
        if two:
            r += ["—" if s.get("apgr") is None else f"{s['apgr']:.3f}", _pct((s.get("cpt") or {}).get("50%")), _pct((s.get("cpt") or {}).get("80%"))]
        out.append(r)
    return out


def header(summary: dict) -> list[str]:
    h = ["strategy", "point", "quality [95% CI]", "cost" if summary["cost_unit"] == "usd" else "strong calls", "of best", "AIQ", "@90%", "@95%", "@99%"]
    if "latency_ms" in summary["strategies"][0]["points"][0]:
        h.append("latency ms")
    if len(summary["models"]) == 2:
        h += ["APGR", "CPT50", "CPT80"]
    return h


def table_text(summary: dict) -> str:
    h, rs = header(summary), rows(summary)
    widths = [max(len(h[i]), *(len(r[i]) for r in rs)) for i in range(len(h))]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    ref = summary["reference"]
    lines = [
        f"{summary['prompts']} prompts, {len(summary['models'])} models; reference {ref['name']}: "
        f"quality {ref['quality']:.3f}, cost {_money(ref['cost'], summary['cost_unit'])}; "
        f"point shown: cheapest reaching {summary['target']:.0%} of it (else the best); "
        "@X%: cost to reach X% of its quality, as a share of its cost",
        line(h),
        line(["-" * w for w in widths]),
    ]
    lines += [line(r) for r in rs]
    if "aiq_vs_per_task" in summary:
        for name, d in summary["aiq_vs_per_task"].items():
            if d["diff"] is not None:
                lines.append(f"AIQ {name} − per-task: {d['diff']:+.4f} (95% CI {d['ci'][0]:+.4f} .. {d['ci'][1]:+.4f})")
    if "monthly" in summary:
        mo = summary["monthly"]
        unit = "$" if mo["unit"] == "usd" else ""
        lines.append(f"monthly at {mo['volume_per_day']:,.0f} prompts/day: {mo['before']['strategy']} {unit}{mo['before']['spend']:,.2f}")
        for name, d in mo["after"].items():
            if name.startswith("single:"):
                continue
            flag = "" if d["meets_target"] else " (misses target)"
            lines.append(f"  {name} @ {d['point'] or '-'}: {unit}{d['spend']:,.2f}{flag}")
    return "\n".join(lines)


def write_decisions(path: Path, table: OutcomeTable, idx: np.ndarray, results: Sequence[Result]) -> int:
    """One line per prompt, strategy and operating point. Returns the line count."""
    models = table.models
    ids = [table.prompts[i].prompt_id for i in idx]
    n = 0
    with open(path, "wb") as f:
        for r in results:
            for p, label in enumerate(r.labels):
                called, ans, cost, qual = r.called[p], r.answered[p], r.cost[p], r.quality[p]
                buf = []
                for k, pid in enumerate(ids):
                    buf.append(
                        orjson.dumps(
                            {
                                "prompt_id": pid,
                                "strategy": r.name,
                                "point": label,
                                "models_called": [models[j] for j in np.flatnonzero(called[k])],
                                "model_answered": models[ans[k]],
                                "cost_usd": float(cost[k]),
                                "quality": float(qual[k]),
                            }
                        )
                    )
                f.write(b"\n".join(buf) + b"\n")
                n += len(buf)
    return n


def plot(path: Path, summary: dict) -> bool:
    """The cost–quality plot; False (and no file) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for s in summary["strategies"]:
        xs = [p["cost"] for p in s["points"]]
        ys = [p["quality"] for p in s["points"]]
        if s["kind"] == "single":
            ax.scatter(xs, ys, s=18, color="grey", zorder=3)
            ax.annotate(s["name"].split(":", 1)[1].split("/")[-1], (xs[0], ys[0]), fontsize=6, color="dimgrey", xytext=(3, 2), textcoords="offset points")
        elif s["tunable"]:
            order = np.argsort(xs)
            ax.plot(np.array(xs)[order], np.array(ys)[order], marker=".", lw=1.2, label=f"{s['name']} (AIQ {s['aiq']:.3f})" if s["aiq"] is not None else s["name"])
        else:
            ax.scatter(xs, ys, marker="*", s=90, zorder=4, label=s["name"])
    ref = summary["reference"]
    ax.axhline(ref["quality"] * summary["target"], color="k", ls=":", lw=0.8, label=f"{summary['target']:.0%} of {ref['name'].split(':', 1)[-1]}")
    unit = summary["cost_unit"]
    ax.set_xlabel("total cost (USD)" if unit == "usd" else f"cost ({unit})")
    ax.set_ylabel("mean quality")
    costs = [p["cost"] for s in summary["strategies"] for p in s["points"] if p["cost"] is not None]
    if unit == "usd" and costs and min(costs) > 0:
        ax.set_xscale("log")  # model prices span orders of magnitude
    elif unit == "usd":
        ax.set_xscale("symlog", linthresh=max(ref["cost"] / 100, 1e-9))
        ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"cost–quality, {summary['prompts']} prompts")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_html(path: Path, summary: dict, png: str | None, notes: Sequence[str], command: str) -> None:
    e = html.escape
    h, rs = header(summary), rows(summary)
    parts = [
        "<!doctype html><meta charset='utf-8'><title>switchman eval</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
        "td:first-child,th:first-child,td:nth-child(2){text-align:left}code{background:#f4f4f4}</style>",
        "<h1>switchman eval</h1>",
        f"<p><code>{e(command)}</code></p>",
        f"<pre>{e(table_text(summary).split(chr(10))[0])}</pre>",
        "<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in h) + "</tr>",
        *("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rs),
        "</table>",
    ]
    if png:
        parts.append(f"<p><img src='{e(png)}' alt='cost-quality plot' style='max-width:100%'></p>")
    rest = table_text(summary).split("\n")[3 + len(rs) :]
    if rest:
        parts.append("<pre>" + e("\n".join(rest)) + "</pre>")
    if notes:
        parts.append("<h2>Data notes</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in notes) + "</ul>")
    path.write_text("\n".join(parts), encoding="utf-8")
