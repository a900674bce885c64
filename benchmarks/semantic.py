#!/usr/bin/env python3
"""The semantic cache against the caching issue's figures: wrong hits on each paraphrase set,
hit rate on GPTCache's 999 pairs, and lookup latency at 100k entries.

Everything goes through ``switchman.cache.semantic.SemanticCache`` (the code the gateway runs):
embedders, static prefilter, guard, learned thresholds, index.

Protocol (the issue's):
- MRPC (test split, label 1 = paraphrase) and STS-B (``test.tsv``, the official dev set; a pair
  scored 4.0 or more is a paraphrase, anything lower is not): for each pair, an answer is kept for
  the first text (in a namespace of its own), then the second is looked up. A hit on a
  non-paraphrase is a wrong hit. Reported: hit rate on true paraphrases, wrong hits among all hits.
- GPTCache's 999 pairs: the distinct ``origin`` texts of the test half are all kept in one
  namespace, each ``similar`` is looked up; a hit is wrong when it returns another origin's answer.
  Origins that differ only in case and punctuation count as one (the set has such near-copies).
- Thresholds are learned as the gateway learns them: from the shipped prior, then from verified
  observations. The verifier here is the data's label, fed from each set's training split (MRPC
  train, STS-B train, the other half of the 999 pairs), never from the pairs measured.
- Latency: a miss at 100k entries in one namespace (usearch HNSW past 20k), embedding included,
  p50 over 300 unrelated prompts; and a lookup that passes the prefilter (MiniLM runs).

    python benchmarks/semantic.py              # the evaluation, written to RESULTS.md
    python benchmarks/semantic.py --write-prior   # rebuild src/switchman/cache/data/semantic-prior.json

The prior is built from STS-B's and MRPC's *training* pairs only.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import asyncio
import csv
import datetime as dt
import json
import random
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from results import write_section  # noqa: E402

from switchman.cache import embedder as emb  # noqa: E402
from switchman.cache.calibration import PRIOR, histogram  # noqa: E402
from switchman.cache.exact import request_key  # noqa: E402
from switchman.cache.guard import conflict  # noqa: E402
from switchman.cache.semantic import PREFILTER, Probe, SemanticCache  # noqa: E402
from switchman.cache.settings import SemanticSettings  # noqa: E402
from switchman.types import ChatRequest, ChatResponse, Message, Role, TextPart  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data" / "paraphrase"
GPTCACHE = {"hits": 0.45, "precision": 0.944}


def mrpc(split: str) -> list[tuple[str, str, bool]]:
    rows = list(csv.reader(open(DATA / "mrpc" / f"msr_paraphrase_{split}.txt", encoding="utf-8-sig"),
                           delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [(r[3], r[4], r[0] == "1") for r in rows if len(r) >= 5]


def stsb(name: str) -> list[tuple[str, str, bool]]:
    rows = list(csv.reader(open(DATA / "stsb" / name, encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE))
    if rows and rows[0][0] == "index":
        rows = rows[1:]
    return [(r[7], r[8], float(r[9]) >= 4.0) for r in rows if len(r) >= 10]


def gptcache() -> list[tuple[str, str]]:
    return [(p["origin"], p["similar"]) for p in json.load(open(DATA / "gptcache-paraphrase-999.json"))]


def same_text(a: str, b: str) -> bool:
    """The set holds origins that differ only in case and punctuation ("AudioFolder" against
    "audiofolder", "(contiguous)" against "contiguous"): one entry, as one answer would serve both."""
    return re.sub(r"[^a-z0-9]", "", a.lower()) == re.sub(r"[^a-z0-9]", "", b.lower())


def req(text: str) -> ChatRequest:
    return ChatRequest(model="faq", messages=[Message(Role.USER, [TextPart(text)])])


def answer(text: str) -> ChatResponse:
    return ChatResponse(id="x", model="m", parts=[TextPart(f"answer to: {text}")])


class Harness:
    """A SemanticCache driven the way ExactCache drives it, with a label as the verifier."""

    def __init__(self, s: SemanticSettings) -> None:
        self.s = s
        self.cache = SemanticCache(request_key)

    async def keep(self, text: str, scope: str) -> None:
        p = await self.cache.find(req(text), scope, "faq", self.s)
        await self.cache.embed_rest(p, self.s)
        self.cache.add(p, f"{scope}:{text}", 1e9, self.s)

    async def look(self, text: str, scope: str) -> Probe | None:
        return await self.cache.find(req(text), scope, "faq", self.s)

    def learn(self, p: Probe, right: bool) -> None:
        """What a verification (or a compared near miss) tells the route: here every would-be hit
        and near miss of the training split is checked, so each weighs 1."""
        if p is not None and p.entry is not None and p.decision in ("hit", "verify", "explore"):
            self.cache.observe("faq", self.s, p.sim, not right, 1.0, None)


async def pairwise(s: SemanticSettings, train, test) -> dict:
    h = Harness(s)
    for i, (a, b, same) in enumerate(train):  # the route's verification history
        await h.keep(a, f"t{i}")
        h.learn(await h.look(b, f"t{i}"), same)
    hits = wrong = para = para_hits = 0
    for i, (a, b, same) in enumerate(test):
        await h.keep(a, f"q{i}")
        p = await h.look(b, f"q{i}")
        hit = p is not None and p.decision in ("hit", "verify")
        para += same
        if hit:
            hits += 1
            wrong += not same
            para_hits += same
    return {"pairs": len(test), "paraphrases": para, "hit_rate": para_hits / max(1, para),
            "wrong_share": wrong / hits if hits else 0.0, "hits": hits,
            "threshold": h.cache.calibrator("faq", s).threshold()}


async def gpt999(s: SemanticSettings) -> dict:
    pairs = gptcache()
    rnd = random.Random(1)
    rnd.shuffle(pairs)
    half = len(pairs) // 2
    h = Harness(s)
    for scope, part, learn in (("train", pairs[:half], True), ("test", pairs[half:], False)):
        origins: dict[str, str] = {}
        for o, _ in part:
            origins.setdefault(re.sub(r"[^a-z0-9]", "", o.lower()), o)
        for o in sorted(origins.values()):
            await h.keep(o, scope)
        hits = wrong = 0
        for o, q in part:
            p = await h.look(q, scope)
            right = p is not None and p.entry is not None and same_text(p.entry.key.split(":", 1)[1], o)
            if learn:
                h.learn(p, right)
            elif p is not None and p.decision in ("hit", "verify"):
                hits += 1
                wrong += not right
    n = len(pairs) - half
    return {"pairs": n, "paraphrases": n, "hit_rate": hits / n, "wrong_share": wrong / hits if hits else 0.0,
            "hits": hits, "threshold": h.cache.calibrator("faq", s).threshold()}


async def latency(s: SemanticSettings, entries: int) -> dict:
    """A miss and a prefilter-passing lookup at ``entries`` entries in one namespace."""
    import numpy as np

    h = Harness(s)
    rows = stsb("train.tsv") + [(b, a, x) for a, b, x in stsb("dev.tsv")]
    texts = [t for a, b, _ in rows for t in (a, b)]
    static = emb.shared("static")
    p0 = await h.look("warm up the embedders here", "g")
    await h.cache.embed_rest(p0, s)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(entries):  # real sentences first, then noise-perturbed copies of them
        t = texts[i % len(texts)]
        sv = static.embed(t)
        if i >= len(texts):
            sv = sv + rng.normal(0, 0.2, sv.shape).astype("float32")
            sv /= np.linalg.norm(sv)
        p = Probe(t, p0.ns, "faq", sv, p0.mv)
        h.cache.add(p, f"k{i}", 1e9, s)
    build = time.perf_counter() - t0
    queries = [q for _, q, _ in mrpc("test")][:300]
    miss, deep = [], []
    for q in queries:
        t = time.perf_counter()
        p = await h.look(q, "g")
        (deep if p is not None and p.mv is not None else miss).append((time.perf_counter() - t) * 1000)
    return {"entries": entries, "miss_p50": statistics.median(miss) if miss else None, "misses": len(miss),
            "deep_p50": statistics.median(deep) if deep else None, "deep": len(deep), "build_s": build}


def idle_rss(semantic: bool) -> float:
    """MiB resident in one idle ``switchman serve`` worker with the cache on (and the semantic
    cache's embedders loaded, when ``semantic``)."""
    import socket
    import subprocess
    import tempfile
    import urllib.request

    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "s.yaml"
        sem = ", semantic: {}" if semantic else ""
        cfg.write_text(f"""providers:\n  oa: {{kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: k}}
models:\n  - {{name: m, provider: oa, model: gpt-4o-mini}}
routes:\n  - {{name: faq, policy: {{kind: first, models: [m]}}, cache: {{enabled: true{sem}}}}}
ledger: {{url: "sqlite:///{tmp}/l.db"}}\n""")
        proc = subprocess.Popen([sys.executable, "-m", "switchman.cli", "serve", "--config", str(cfg), "--port",
                                 str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            time.sleep(1)
            kb = max(int(line.split()[1]) for pid in [proc.pid, *_children(proc.pid)]
                     for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS"))
            return kb / 1024
        finally:
            proc.terminate()
            proc.wait(10)


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def write_prior() -> None:
    out = {}
    for name in ("minilm", "static"):
        e = emb.shared(name)
        pairs = []
        for a, b, same in stsb("train.tsv") + mrpc("train"):
            if conflict(a, b) is None:  # the guard runs before any threshold
                pairs.append((float(e.embed(a) @ e.embed(b)), not same))
        out[name] = histogram(pairs)
    PRIOR.write_text(json.dumps(out, separators=(",", ":")))
    print(f"wrote {PRIOR}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-prior", action="store_true")
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--max-error", type=float, default=0.02)
    ap.add_argument("--confidence", type=float, default=0.84)
    args = ap.parse_args()
    if args.write_prior:
        write_prior()
        return
    s = SemanticSettings(max_error=args.max_error, confidence=args.confidence)
    rows = []
    for name, train, test in (("MRPC (test, 1,725 pairs)", mrpc("train"), mrpc("test")),
                              ("STS-B (dev, 1,500 pairs)", stsb("train.tsv"), stsb("test.tsv"))):
        r = await pairwise(s, train, test)
        rows.append((name, r))
        print(name, r, flush=True)
    g = await gpt999(s)
    rows.append(("GPTCache 999 (test half)", g))
    print("gptcache", g, flush=True)
    loose = replace(s, confidence=0.5)
    g5 = await gpt999(loose)
    rows.append(("GPTCache 999 (test half), confidence 0.5", g5))
    lat = await latency(s, args.entries)
    print("latency", lat, flush=True)
    rss = (idle_rss(False), idle_rss(True))
    print("rss", rss, flush=True)
    lines = [f"Run {dt.date.today()}: `python benchmarks/semantic.py {shlex.join(sys.argv[1:])}`".rstrip(),
             "", f"max_error {s.max_error}, confidence {s.confidence}, embedder {s.embedder} (static prefilter at "
             f"{PREFILTER}), thresholds learned from each set's training split (the label as the verifier).", "",
             "| set | pairs | paraphrases | hits | hit rate on paraphrases | wrong hits among hits (target ≤ max_error) | learned threshold |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        ok = "✅" if r["wrong_share"] <= s.max_error else "❌"
        lines.append(f"| {name} | {r['pairs']} | {r['paraphrases']} | {r['hits']} | {r['hit_rate']:.1%} | "
                     f"{r['wrong_share']:.2%} {ok} | {r['threshold']:.3f} |")
    gp = "✅" if g["hit_rate"] > GPTCACHE["hits"] and g["wrong_share"] <= s.max_error else "❌"
    lines += ["", f"GPTCache 999 at max_error {s.max_error}: {g['hit_rate']:.1%} hits at {1 - g['wrong_share']:.1%} "
              f"precision, against GPTCache's published 45% at 94.4% (threshold 0.95) {gp}. With confidence 0.5 "
              f"(the measured share, no margin): {g5['hit_rate']:.1%} hits at {1 - g5['wrong_share']:.1%}.", "",
              "| lookup at | p50 (target ≤ 2 ms) | lookups |", "|---|---|---|",
              f"| a miss the prefilter settles, {lat['entries']:,} entries (usearch) | {lat['miss_p50']:.2f} ms "
              f"{'✅' if (lat['miss_p50'] or 99) <= 2 else '❌'} | {lat['misses']} |"]
    if lat["deep_p50"] is not None:
        lines.append(f"| a lookup the prefilter passes (MiniLM runs), {lat['entries']:,} entries | "
                     f"{lat['deep_p50']:.2f} ms ❌ (MiniLM int8 alone is 4-5 ms here) | {lat['deep']} |")
    lines += ["", f"One idle worker, exact cache on: {rss[0]:.0f} MiB resident; with the semantic cache and both "
              f"embedders loaded: {rss[1]:.0f} MiB (the 80 MiB idle target applies to the exact cache only)."]
    table = "\n".join(lines)
    print(table)
    write_section(HERE / "RESULTS.md", "semantic", table)


if __name__ == "__main__":
    asyncio.run(main())
