#!/usr/bin/env python3
"""Local token counts for streams that end without usage: 4 characters a token against the
shipped o200k_base tokenizer (``switchman.tokens``), on real prompts and answers.

1. accuracy: for each kind of text, the o200k_base count (exact for OpenAI's current models)
   against ``len // 4``: the error of the total, and the mean and p90 error per text. Texts:
   the prompts and answers of ``../shared/data`` (ARC, Winogrande, MBPP code, GSM8K), and a few
   fixed snippets the data has none of (German, Russian, Chinese, Japanese, a JSON tool call);
2. cost: first load (time, resident memory), and microseconds per count at 100 / 1,000 / 10,000
   characters.

    python benchmarks/tokens.py             # a few seconds
    python benchmarks/tokens.py --no-write  # print only

Writes the table to stdout and to benchmarks/RESULTS.md between ``<!-- tokens:begin -->`` and
``<!-- tokens:end -->`` (other sections are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import gzip
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from switchman import tokens  # noqa: E402
from results import write_section  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SNIPPETS = {
    "German prose": "Die Bundesregierung hat am Mittwoch beschlossen, die Förderung für erneuerbare Energien im "
                    "kommenden Jahr deutlich auszuweiten. Kritiker bemängeln jedoch, dass die Maßnahmen nicht "
                    "ausreichen.",
    "Russian prose": "Правительство в среду решило значительно расширить поддержку возобновляемых источников "
                     "энергии в следующем году. Однако критики считают, что этих мер недостаточно.",
    "Chinese prose": "政府周三决定明年大幅扩大对可再生能源的支持。然而，批评者认为这些措施还不够。",
    "Japanese prose": "政府は水曜日、来年の再生可能エネルギーへの支援を大幅に拡大することを決定した。"
                      "しかし、批判者たちはこれらの措置では不十分だと指摘している。",
    "JSON tool call": '{"id": "call_8f3a", "type": "function", "function": {"name": "get_weather", "arguments": '
                      '"{\\"city\\": \\"Paris\\", \\"unit\\": \\"celsius\\"}"}}',
}


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def texts(quick: bool) -> dict[str, list[str]]:
    """Prompts (once each) and answers, by kind, from the routing data sets."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    limit = 2_000 if quick else None
    with gzip.open(DATA / "routerbench-3task" / "outcomes.jsonl.gz") as f:
        for line in f:
            d = orjson.loads(line)
            task = d["task"]
            if d["prompt_id"] not in seen:
                seen.add(d["prompt_id"])
                out.setdefault(f"{task} prompts", []).append(d["prompt"])
            if d.get("response"):
                out.setdefault(f"{task} answers (11 models)", []).append(d["response"])
    with gzip.open(DATA / "zeroeval-gsm8k" / "outcomes.jsonl.gz") as f:
        for line in f:
            d = orjson.loads(line)
            if d["prompt_id"] not in seen:
                seen.add(d["prompt_id"])
                out.setdefault("gsm8k prompts", []).append(d["prompt"])
    return {k: v[:limit] for k, v in sorted(out.items())}


def accuracy(kind: str, items: list[str]) -> tuple:
    true = [tokens.count(t) for t in items]
    est = [len(t) // 4 for t in items]
    errs = sorted(abs(e - n) / n for e, n in zip(est, true) if n)
    total = sum(est) / sum(true) - 1
    return (kind, f"{len(items):,}", f"{sum(true):,}", f"{sum(est):,}", f"{total:+.1%}",
            f"{statistics.mean(errs):.1%}", f"{errs[int(0.9 * (len(errs) - 1))]:.1%}")


def per_count_us(text: str, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        tokens.count(text)
    return (time.perf_counter() - t) / n * 1e6


def run(quick: bool) -> tuple[list[tuple], list[tuple], list[str]]:
    gc.collect()
    before = rss_mib()
    t = time.perf_counter()
    tokens.count("warm up")
    load_ms = (time.perf_counter() - t) * 1000
    gc.collect()
    loaded = rss_mib() - before
    by_kind = texts(quick)
    acc = [accuracy(k, v) for k, v in by_kind.items()]
    acc += [accuracy(k, [v]) for k, v in SNIPPETS.items()]
    code = " ".join(by_kind["mbpp answers (11 models)"])
    prose = " ".join(by_kind["arc-challenge prompts"])
    cost = [("first load (ms) / resident memory added (MiB)", f"{load_ms:.0f} / {loaded:.1f}")]
    for n in (100, 1_000, 10_000):
        reps = 20 if quick else (2_000 if n < 10_000 else 200)
        cost.append((f"count {n:,} characters, English prose / code (µs)",
                     f"{per_count_us(prose[:n], reps):.0f} / {per_count_us(code[:n], reps):.0f}"))
    notes = [
        "o200k_base is OpenAI's tokenizer for GPT-4o, GPT-4.1, GPT-5 and the o-series (exact for them); "
        "Anthropic's and Google's tokenizers are not published, so for their models it is the closest offline one",
        "`len // 4` rounds down: a one-token answer (\"B\") estimates as 0, hence the ARC and Winogrande answer rows",
        "the count runs only for a stream that ended without its final usage (cut, client gone, an upstream "
        "ignoring include_usage), in a thread, after the answer: the load and the per-count cost are off the request path",
    ]
    return acc, cost, notes


def render(acc: list[tuple], cost: list[tuple], notes: list[str], seconds: float, quick: bool) -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "## Token counts for streams without usage: 4 characters a token vs o200k_base",
        "",
        f"- date: {now}; run took {seconds:.0f} s{' (quick)' if quick else ''}",
        f"- command: `python benchmarks/tokens.py{' --quick' if quick else ''}`",
        f"- machine: {os.cpu_count()} CPUs; Python {platform.python_version()}",
        "",
        "| text | texts | o200k tokens | chars // 4 | error of the total | mean error per text | p90 error per text |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    body = [f"| {' | '.join(r)} |" for r in acc]
    mid = ["", "| cost of the tokenizer | result |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in cost]
    return "\n".join(head + body + mid + [""] + [f"- {n}" for n in notes]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer texts and repetitions")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    a = ap.parse_args()
    t = time.time()
    acc, cost, notes = run(a.quick)
    text = render(acc, cost, notes, time.time() - t, a.quick)
    print(text)
    if not a.no_write:
        write_section(Path(a.results), "tokens", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
