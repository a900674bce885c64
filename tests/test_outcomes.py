"""Reading outcome data: the shared sets give the README's check numbers, and bad data fails
with errors that name the file and line."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import orjson
import pytest

from switchman.outcomes import DataError, load_table, read_outcomes, resolve_costs, to_table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(not (DATA / "routerbench-3task").exists(), reason="shared outcome data not present")


def _row(pid="p1", model="a", quality=1.0, **kw):
    return {"prompt_id": pid, "task": "t", "split": None, "prompt": f"prompt {pid}", "model": model, "quality": quality, "cost_usd": 0.01, **kw}


def _jsonl(path: Path, rows) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@needs_data
def test_routerbench_test_split_matches_the_readme_check_numbers():
    t = load_table([DATA / "routerbench-3task" / "outcomes.jsonl.gz"])
    assert len(t) == 3164 and len(t.models) == 11
    test = t.subset(t.split_indices("test"))
    assert len(test) == 946
    cost, unit, _ = resolve_costs(test)
    assert unit == "usd"
    g4 = test.models.index("gpt-4-1106-preview")
    assert round(test.quality[:, g4].mean(), 3) == 0.878
    assert round(cost[:, g4].sum(), 2) == 4.74
    m7 = test.models.index("mistralai/mistral-7b-chat")
    assert round(test.quality[:, m7].mean(), 3) == 0.592
    assert round(cost[:, m7].sum(), 3) == 0.077
    # oracle: the cheapest model that answered correctly (else the cheapest)
    q, c = test.quality, cost
    pick = [int(np.lexsort((c[i], -q[i]))[0]) for i in range(len(test))]
    assert round(np.mean([q[i, j] for i, j in enumerate(pick)]), 3) == 0.976
    assert round(sum(c[i, j] for i, j in enumerate(pick)), 3) == 0.200
    assert t.dropped.null_quality == 68


@needs_data
def test_routellm_numbers_and_strong_call_costs():
    t = load_table([DATA / "routellm-mmlu-gsm8k" / "outcomes.jsonl.gz"])
    g4 = t.models.index("gpt-4-1106-preview")
    for prefix, strong, weak in (("mmlu", 0.806, 0.681), ("gsm8k", 0.858, 0.637)):
        ix = [i for i, p in enumerate(t.prompts) if p.task.startswith(prefix)]
        q = t.quality[ix]
        assert round(q[:, g4].mean(), 3) == strong
        assert round(q[:, 1 - g4].mean(), 3) == weak
    cost, unit, notes = resolve_costs(t)
    assert unit == "strong-model calls"
    assert cost[:, g4].sum() == len(t) and cost[:, 1 - g4].sum() == 0
    assert "strong model" in notes[0]


def test_missing_field_names_file_and_line(tmp_path):
    p = _jsonl(tmp_path / "o.jsonl", [_row(), {k: v for k, v in _row(model="b").items() if k != "quality"}])
    with pytest.raises(DataError) as e:
        read_outcomes([p])
    assert f"{p}:2" in str(e.value) and "quality" in str(e.value)


def test_bad_values_are_located(tmp_path):
    p = _jsonl(tmp_path / "o.jsonl", [_row(quality=1.5)])
    with pytest.raises(DataError, match=r"o.jsonl:1.*outside 0..1"):
        read_outcomes([p])
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt_id": "x"\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1.*not JSON"):
        read_outcomes([p])


def test_unknown_model_and_duplicates_are_errors(tmp_path):
    p = _jsonl(tmp_path / "o.jsonl", [_row(model="a"), _row(model="zzz")])
    with pytest.raises(DataError, match=r"o.jsonl:2.*unknown model 'zzz'"):
        read_outcomes([p], known_models=["a"])
    p = _jsonl(tmp_path / "d.jsonl", [_row(), _row()])
    with pytest.raises(DataError, match=r"d.jsonl:2.*second outcome.*first at .*d.jsonl:1"):
        read_outcomes([p])


def test_incomplete_prompts_are_reported_and_dropped_or_fail(tmp_path):
    rows = []
    for i in range(20):
        rows.append(_row(f"p{i}", "a"))
        if i != 3:
            rows.append(_row(f"p{i}", "b"))
        if i < 5:
            rows.append(_row(f"p{i}", "rare"))  # answered 5 of 20: the model goes, not the prompts
    p = _jsonl(tmp_path / "o.jsonl", rows)
    t = load_table([p])
    assert t.models == ["a", "b"]
    assert len(t) == 19 and "p3" not in [x.prompt_id for x in t.prompts]
    lines = " | ".join(t.dropped.lines())
    assert "dropped model rare" in lines and "p3 (lacks b)" in lines
    with pytest.raises(DataError, match="has no outcome for model"):
        load_table([p], on_incomplete="fail")


def test_csv_gzip_and_parquet_read_the_same(tmp_path):
    rows = [_row("p1", "a", 1.0), _row("p1", "b", 0.0, cost_usd=None), _row("p2", "a", None), _row("p2", "b", 1.0)]
    j = _jsonl(tmp_path / "o.jsonl", rows)
    with gzip.open(tmp_path / "o.jsonl.gz", "wb") as f:
        f.write(j.read_bytes())
    with open(tmp_path / "o.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "o.parquet")
    got = [read_outcomes([tmp_path / n]) for n in ("o.jsonl", "o.jsonl.gz", "o.csv", "o.parquet")]
    key = lambda os_: [(o.prompt_id, o.model, o.quality, o.cost_usd) for o in os_]  # noqa: E731
    assert all(key(g) == key(got[0]) for g in got)
    assert got[0][2].quality is None and got[0][1].cost_usd is None
    t = to_table(got[2])
    assert t.quality[1, 0] == 0.0 and t.dropped.null_quality == 1  # no score counts as not correct
    cost, unit, notes = resolve_costs(t)
    assert cost[0, 1] == 0.01 and "counted at its mean" in notes[0]


def test_costs_unknown_for_many_models_need_prices(tmp_path):
    rows = [_row(f"p{i}", m, cost_usd=None) for i in range(3) for m in ("a", "b", "c")]
    t = load_table([_jsonl(tmp_path / "o.jsonl", rows)])
    with pytest.raises(DataError, match="--cost"):
        resolve_costs(t)
    cost, unit, _ = resolve_costs(t, {"a": 0.1, "b": 0.2, "c": 0.3})
    assert unit == "usd" and cost[0].tolist() == [0.1, 0.2, 0.3]
