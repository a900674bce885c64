"""``switchman eval`` and ``switchman train`` end to end on small synthetic outcome data."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from switchman.eval.command import eval_main, train_main

pytest.importorskip("sklearn")

MATH = ["what is {} plus {}", "compute {} times {}", "solve {} minus {}"]
POEM = ["write a poem about {} and {}", "a sonnet on {} with {}", "compose verses on {} {}"]
WORDS = ["sea", "cats", "rain", "moon", "roses", "frogs"]


def _data(path, n=120, split=True, models=("cheap", "mid", "dear")):
    """cheap: right on maths only; mid: right 70% of the time; dear: always right, 10× cheap."""
    rng = np.random.default_rng(0)
    price = {"cheap": 0.001, "mid": 0.003, "dear": 0.01, "other": 0.02}
    lines = []
    for i in range(n):
        maths = i % 2 == 0
        text = (MATH if maths else POEM)[rng.integers(3)].format(*(rng.choice(WORDS, 2) if not maths else rng.integers(99, size=2)))
        for m in models:
            q = {"cheap": float(maths), "mid": float(rng.random() < 0.7)}.get(m, 1.0)
            lines.append(
                {
                    "prompt_id": f"p{i}",
                    "task": "math" if maths else "poem",
                    "split": ("test" if i % 5 == 0 else "train") if split else None,
                    "prompt": text,
                    "model": m,
                    "quality": q,
                    "cost_usd": price[m],
                    "response": "42" if maths else "roses are red",
                    "latency_ms": {"cheap": 100.0, "mid": 300.0}.get(m, 1000.0),
                }
            )
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    return path


def test_eval_writes_its_files_with_baselines_and_the_router(tmp_path, capsys):
    data = _data(tmp_path / "o.jsonl")
    out = tmp_path / "out"
    rc = eval_main(["--data", str(data), "--out", str(out), "--volume", "1000/day", "--bootstrap", "50"])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in ("single:cheap", "best-single", "cheapest-meeting", "per-task", "random", "oracle", "learned"):
        assert name in printed
    s = orjson.loads((out / "summary.json").read_bytes())
    names = {x["name"]: x for x in s["strategies"]}
    assert s["reference"]["name"] == "single:dear" and s["prompts"] == 24
    learned = names["learned"]
    # maths goes to the cheap model, poems to the dear one: full quality for ~55% of the cost
    best = max(learned["points"], key=lambda p: (p["quality"], -p["cost"]))
    assert best["quality"] == 1.0 and best["cost_share"] < 0.7
    assert learned["cost_to_reach"]["99%"] < 0.7
    assert names["oracle"]["points"][0]["quality"] == 1.0
    assert names["single:cheap"]["points"][0]["latency_ms"] == 100.0 and "latency ms" in printed
    assert "decision_ms_p50" in s and "quality_ci" in learned["points"][0] and s["monthly"]["before"]["spend"] == pytest.approx(0.01 * 1000 * 30)
    assert (out / "report.html").read_text().count("<tr>") >= 10
    assert (out / "cost_quality.png").read_bytes()[:4] == b"\x89PNG"
    lines = (out / "decisions.jsonl").read_bytes().splitlines()
    d = orjson.loads(lines[0])
    assert set(d) == {"prompt_id", "strategy", "point", "models_called", "model_answered", "cost_usd", "quality"}
    per_prompt = {}
    for ln in lines:
        r = orjson.loads(ln)
        if r["strategy"] == "learned" and r["point"] == best["point"]:
            per_prompt[r["prompt_id"]] = r["model_answered"]
    assert len(per_prompt) == 24
    assert {m for p, m in per_prompt.items() if int(p[1:]) % 2 == 0} == {"cheap"}  # maths
    # poems never go to the model that fails them all (mid, right 70% of the time, may be lucky)
    poems = {m for p, m in per_prompt.items() if int(p[1:]) % 2 == 1}
    assert "cheap" not in poems and "dear" in poems


def test_train_then_eval_with_the_saved_router(tmp_path, capsys):
    data = _data(tmp_path / "o.jsonl", split=False)
    router = tmp_path / "r.npz"
    assert train_main(["--data", str(data), "--out", str(router)]) == 0
    printed = capsys.readouterr().out
    assert "trained on 120 prompts" in printed
    assert "learned per task too (math, poem): tag requests x-switchman-tags: task=NAME" in printed
    out = tmp_path / "out"
    rc = eval_main(["--data", str(data), "--router", str(router), "--out", str(out), "--no-decisions", "--bootstrap", "0"])
    assert rc == 0
    s = orjson.loads((out / "summary.json").read_bytes())
    assert any("given router" in n for n in s["notes"])
    assert not (out / "decisions.jsonl").exists()


def test_kfold_when_the_data_has_no_split(tmp_path):
    data = _data(tmp_path / "o.jsonl", split=False)
    out = tmp_path / "out"
    assert eval_main(["--data", str(data), "--out", str(out), "--no-decisions", "--bootstrap", "0", "--folds", "3"]) == 0
    s = orjson.loads((out / "summary.json").read_bytes())
    assert s["prompts"] == 120 and "3-fold" in s["notes"][0]


def test_usage_and_data_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_id": "p", "prompt": "x", "model": "a"}\n')
    assert eval_main(["--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    data = _data(tmp_path / "o.jsonl", n=8)
    assert eval_main(["--data", str(data), "--out", str(tmp_path / "o"), "--strategy", "nope"]) == 2
    assert eval_main(["--data", str(data), "--out", str(tmp_path / "o"), "--router", str(tmp_path / "none.npz")]) == 2
    router = tmp_path / "r.npz"
    assert train_main(["--data", str(data), "--out", str(router)]) == 0
    other = _data(tmp_path / "p.jsonl", n=8, models=("cheap", "dear", "other"))
    assert eval_main(["--data", str(other), "--router", str(router), "--out", str(tmp_path / "o")]) == 2
    assert "unknown model 'other'" in capsys.readouterr().err


def test_eval_plans_says_which_plan_each_task_got(tmp_path, capsys):
    data = _data(tmp_path / "o.jsonl")
    out = tmp_path / "out"
    assert eval_main(["--data", str(data), "--strategy", "plans", "--out", str(out), "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    note = next(line for line in printed.splitlines() if line.startswith("note: plans at λ="))
    assert "math → cheap" in note and "poem → " in note  # maths: the cheap model is always right
    s = orjson.loads((out / "summary.json").read_bytes())
    (plans,) = [x for x in s["strategies"] if x["name"] == "plans"]
    assert plans["plans"][0]["math"] == "cheap"


def test_eval_the_warm_bandit_decides_as_its_router_while_feedback_agrees_with_it(tmp_path):
    """The test stream is like the router's training data, so its scores are no evidence against
    the router: at every λ the warm bandit's decisions, cost and quality are `learned`'s."""
    data = _data(tmp_path / "o.jsonl", n=400)
    out = tmp_path / "out"
    assert eval_main(["--data", str(data), "--out", str(out), "--strategy", "learned,bandit", "--bootstrap", "0"]) == 0
    names = {x["name"]: x for x in orjson.loads((out / "summary.json").read_bytes())["strategies"]}
    learned, warm = names["learned"]["points"], names["bandit"]["points"]
    assert [(p["quality"], p["cost"]) for p in warm] == [(p["quality"], p["cost"]) for p in learned]
    rows = [orjson.loads(x) for x in (out / "decisions.jsonl").read_bytes().splitlines()]
    answered = {s: {(r["prompt_id"], r["point"]): r["model_answered"] for r in rows if r["strategy"] == s}
                for s in ("learned", "bandit")}
    assert len(answered["bandit"]) == 80 * len(learned) and answered["bandit"] == answered["learned"]


def test_eval_bandit_replays_the_stream_warm_and_cold(tmp_path, capsys):
    """The bandit policy replayed as traffic with feedback on a fifth of it: warm-started from the
    train split it learns per task that maths can go to the cheap model, and reaches full quality
    cheaper than the dear model alone; cold it pays to learn."""
    data = _data(tmp_path / "o.jsonl", n=400)
    out = tmp_path / "out"
    assert eval_main(["--data", str(data), "--out", str(out), "--strategy", "bandit,bandit-cold",
                      "--bootstrap", "20"]) == 0
    names = {x["name"]: x for x in orjson.loads((out / "summary.json").read_bytes())["strategies"]}
    warm, cold = names["bandit"], names["bandit-cold"]
    best_warm = max(warm["points"], key=lambda p: (p["quality"] >= 0.95, -p["cost"]))
    assert best_warm["quality"] >= 0.95 and best_warm["cost_share"] < 0.8
    assert max(p["quality"] for p in cold["points"]) <= max(p["quality"] for p in warm["points"])
    assert "bandit" in capsys.readouterr().out
