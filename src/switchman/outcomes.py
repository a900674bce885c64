"""Outcome data: what each model did on each prompt, for training and evaluating routers offline.

One row per (prompt, model) with the fields of the outcomes format (``prompt_id, task, split,
prompt, model, quality, cost_usd, input_tokens, output_tokens, response``; ``latency_ms`` is
read too where present). Read from JSON Lines (gzip'd or not), CSV or Parquet (the ``[eval]``
extra's pyarrow).

:func:`read_outcomes` reads rows and checks each one, naming ``file:line`` on any problem;
:func:`to_table` lines them up into a prompts × models :class:`OutcomeTable`.

Incomplete data policy (prompts lacking an outcome for some model), chosen so that the most
recorded outcomes survive and every loss is reported, never silent:

1. a model that answered fewer than ``min_coverage`` (default 90%) of the prompts is dropped;
2. then every prompt still missing some model's outcome is dropped.

``on_incomplete="fail"`` raises :class:`DataError` instead, naming the first gap. A ``null``
quality (the source could not score the answer) is kept as missing in the rows and counted as
0 (not correct) in the table, which matches how the published figures count them.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import orjson

from .errors import SwitchmanError

FIELDS = (
    "prompt_id",
    "task",
    "split",
    "prompt",
    "model",
    "quality",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "response",
)
REQUIRED = ("prompt_id", "prompt", "model", "quality")
SPLITS = ("train", "test")


class DataError(SwitchmanError):
    """Outcome data that cannot be used as given; ``where`` is ``file:line`` when known."""

    kind = "data_error"

    def __init__(self, message: str, where: str | None = None, field: str | None = None) -> None:
        self.where = where
        self.field = field
        loc = ", ".join(x for x in (where, f"field '{field}'" if field else None) if x)
        super().__init__(f"{loc}: {message}" if loc else message)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One model's recorded result on one prompt."""

    prompt_id: str
    prompt: str
    model: str
    quality: float | None  # 0..1; None where the source has no score
    task: str | None = None
    split: str | None = None  # "train", "test" or None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    response: str | None = None
    latency_ms: float | None = None
    where: str = ""  # file:line, for later error messages


# ---------------------------------------------------------------------------------------------
# reading


def read_outcomes(
    paths: Iterable[str | Path],
    *,
    known_models: Iterable[str] | None = None,
) -> list[Outcome]:
    """Read and check every row of the given files.

    ``known_models``, when given, is the set of models the caller can handle (a trained router's,
    a config's): a row naming any other model is a :class:`DataError`. Duplicate
    (prompt, model) rows are errors too, naming both places.
    """
    known = frozenset(known_models) if known_models is not None else None
    out: list[Outcome] = []
    seen: dict[tuple[str, str], str] = {}
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise DataError(f"no such file: {p}")
        for where, raw in _records(p):
            o = _outcome(raw, where)
            if known is not None and o.model not in known:
                raise DataError(
                    f"unknown model '{o.model}' (known: {', '.join(sorted(known))})", where, "model"
                )
            key = (o.prompt_id, o.model)
            if key in seen:
                raise DataError(
                    f"second outcome for prompt '{o.prompt_id}' and model '{o.model}' (first at {seen[key]})",
                    where,
                )
            seen[key] = where
            out.append(o)
    if not out:
        raise DataError("no outcome rows in " + ", ".join(str(p) for p in paths))
    return out


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        yield from _parquet(path)
        return
    opener = gzip.open if name.endswith(".gz") else open
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith(".csv"):
        with opener(path, "rt", encoding="utf-8", newline="") as f:  # type: ignore[operator]
            yield from _csv(path, f)
        return
    with opener(path, "rb") as f:  # type: ignore[operator]
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise DataError(f"not JSON ({e})", f"{path}:{i}") from None
            if not isinstance(rec, dict):
                raise DataError("a line must be a JSON object", f"{path}:{i}")
            yield f"{path}:{i}", rec


def _csv(path: Path, f: io.TextIOBase) -> Iterator[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(f)  # type: ignore[arg-type]
    missing = [k for k in REQUIRED if k not in (reader.fieldnames or ())]
    if missing:
        raise DataError(f"CSV header lacks column(s) {', '.join(missing)}", f"{path}:1")
    for rec in reader:
        # CSV has no null: an empty cell is one. Numbers are parsed by _outcome.
        yield f"{path}:{reader.line_num}", {k: (v if v != "" else None) for k, v in rec.items()}


def _parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "reading Parquet needs pyarrow: pip install 'switchman[eval]'", str(path)
        ) from None
    table = pq.read_table(path)
    for i, rec in enumerate(table.to_pylist(), 1):
        yield f"{path}:row {i}", rec


def _outcome(rec: dict[str, Any], where: str) -> Outcome:
    for k in REQUIRED:
        if k not in rec:
            raise DataError("missing field", where, k)
    prompt_id = _str(rec, "prompt_id", where, required=True)
    prompt = _str(rec, "prompt", where, required=True)
    model = _str(rec, "model", where, required=True)
    quality = _num(rec, "quality", where)
    if quality is not None and not 0.0 <= quality <= 1.0:
        raise DataError(f"quality {quality} is outside 0..1", where, "quality")
    cost = _num(rec, "cost_usd", where)
    if cost is not None and cost < 0:
        raise DataError(f"negative cost {cost}", where, "cost_usd")
    split = _str(rec, "split", where)
    if split is not None and split not in SPLITS:
        raise DataError(f"split '{split}' is not one of {', '.join(SPLITS)} or null", where, "split")
    return Outcome(
        prompt_id=prompt_id,  # type: ignore[arg-type]
        prompt=prompt,  # type: ignore[arg-type]
        model=model,  # type: ignore[arg-type]
        quality=quality,
        task=_str(rec, "task", where),
        split=split,
        cost_usd=cost,
        input_tokens=_int(rec, "input_tokens", where),
        output_tokens=_int(rec, "output_tokens", where),
        response=_str(rec, "response", where),
        latency_ms=_num(rec, "latency_ms", where),
        where=where,
    )


def _str(rec: dict, key: str, where: str, required: bool = False) -> str | None:
    v = rec.get(key)
    if v is None:
        if required:
            raise DataError("must not be empty", where, key)
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)  # ids written as numbers are still ids
    if not isinstance(v, str):
        raise DataError(f"expected text, got {type(v).__name__}", where, key)
    if required and not v:
        raise DataError("must not be empty", where, key)
    return v


def _num(rec: dict, key: str, where: str) -> float | None:
    v = rec.get(key)
    if v is None:
        return None
    if isinstance(v, bool):
        return float(v)  # quality as true/false is a fair way to write correct/incorrect
    if isinstance(v, (int, float)):
        x = float(v)
    elif isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "false"):
            return 1.0 if s == "true" else 0.0
        try:
            x = float(s)
        except ValueError:
            raise DataError(f"expected a number, got '{v}'", where, key) from None
    else:
        raise DataError(f"expected a number, got {type(v).__name__}", where, key)
    if math.isnan(x):
        return None
    if math.isinf(x):
        raise DataError("infinite", where, key)
    return x


def _int(rec: dict, key: str, where: str) -> int | None:
    x = _num(rec, key, where)
    return None if x is None else int(x)


# ---------------------------------------------------------------------------------------------
# the prompts × models table


@dataclass(frozen=True, slots=True)
class Prompt:
    prompt_id: str
    text: str
    task: str | None
    split: str | None


@dataclass(slots=True)
class Dropped:
    """What :func:`to_table` left out, and why (for the report)."""

    models: dict[str, str] = field(default_factory=dict)  # model -> reason
    prompts: int = 0
    prompt_examples: list[str] = field(default_factory=list)  # a few "prompt_id (lacks model)"
    null_quality: int = 0  # outcomes with no score, counted as 0

    def lines(self) -> list[str]:
        out = [f"dropped model {m}: {why}" for m, why in self.models.items()]
        if self.prompts:
            ex = "; ".join(self.prompt_examples)
            out.append(f"dropped {self.prompts} prompt(s) lacking an outcome for some model, e.g. {ex}")
        if self.null_quality:
            out.append(f"{self.null_quality} outcome(s) had no quality score; counted as 0 (not correct)")
        return out


@dataclass(slots=True)
class OutcomeTable:
    """Outcomes lined up: ``quality[i, j]`` and ``cost[i, j]`` for prompt ``i`` and model ``j``.

    ``cost`` is NaN where the data has none; ``responses`` is None when no row kept one.
    """

    prompts: list[Prompt]
    models: list[str]
    quality: Any  # numpy float64 (n, m)
    cost: Any  # numpy float64 (n, m), NaN = unknown
    input_tokens: Any  # numpy float64 (n, m), NaN = unknown
    output_tokens: Any  # numpy float64 (n, m), NaN = unknown
    latency_ms: Any  # numpy float64 (n, m), NaN = unknown
    responses: list[list[str | None]] | None
    dropped: Dropped

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, idx: Sequence[int]) -> "OutcomeTable":
        import numpy as np

        ix = np.asarray(idx, dtype=np.int64)
        return OutcomeTable(
            prompts=[self.prompts[i] for i in ix],
            models=list(self.models),
            quality=self.quality[ix],
            cost=self.cost[ix],
            input_tokens=self.input_tokens[ix],
            output_tokens=self.output_tokens[ix],
            latency_ms=self.latency_ms[ix],
            responses=[self.responses[i] for i in ix] if self.responses is not None else None,
            dropped=self.dropped,
        )

    def split_indices(self, split: str) -> list[int]:
        return [i for i, p in enumerate(self.prompts) if p.split == split]

    @property
    def tasks(self) -> list[str | None]:
        return [p.task for p in self.prompts]


def to_table(
    rows: Sequence[Outcome],
    *,
    on_incomplete: str = "drop",
    min_coverage: float = 0.9,
) -> OutcomeTable:
    """Line rows up into an :class:`OutcomeTable` (see the module doc for the incomplete-data
    policy). ``on_incomplete`` is ``"drop"`` (report and drop) or ``"fail"``."""
    import numpy as np

    if on_incomplete not in ("drop", "fail"):
        raise ValueError(f"on_incomplete must be 'drop' or 'fail', not {on_incomplete!r}")
    prompts: dict[str, Prompt] = {}
    by_prompt: dict[str, dict[str, Outcome]] = {}
    for o in rows:
        if o.prompt_id not in prompts:
            prompts[o.prompt_id] = Prompt(o.prompt_id, o.prompt, o.task, o.split)
            by_prompt[o.prompt_id] = {}
        elif prompts[o.prompt_id].split != o.split:
            first = next(iter(by_prompt[o.prompt_id].values()))
            raise DataError(
                f"prompt '{o.prompt_id}' is in split {o.split!r} here but {first.split!r} at {first.where}",
                o.where,
                "split",
            )
        by_prompt[o.prompt_id][o.model] = o
    models = sorted({o.model for o in rows})
    dropped = Dropped()
    n = len(prompts)
    cover = {m: 0 for m in models}
    for d in by_prompt.values():
        for m in d:
            cover[m] += 1
    if any(c < n for c in cover.values()) and on_incomplete == "fail":
        m = next(m for m in models if cover[m] < n)
        pid = next(p for p, d in by_prompt.items() if m not in d)
        where = next(iter(by_prompt[pid].values())).where
        raise DataError(f"prompt '{pid}' has no outcome for model '{m}'", where)
    keep_models = [m for m in models if cover[m] >= min_coverage * n]
    for m in models:
        if m not in keep_models:
            dropped.models[m] = f"answered {cover[m]} of {n} prompts (< {min_coverage:.0%})"
    if len(keep_models) < 1:
        raise DataError("no model answered enough of the prompts to compare models")
    keep_prompts = []
    for pid, d in by_prompt.items():
        lacks = [m for m in keep_models if m not in d]
        if lacks:
            dropped.prompts += 1
            if len(dropped.prompt_examples) < 3:
                dropped.prompt_examples.append(f"{pid} (lacks {lacks[0]})")
        else:
            keep_prompts.append(pid)
    if not keep_prompts:
        raise DataError("no prompt has an outcome for every model")
    shape = (len(keep_prompts), len(keep_models))
    q = np.zeros(shape)
    c = np.full(shape, np.nan)
    ti = np.full(shape, np.nan)
    to = np.full(shape, np.nan)
    lat = np.full(shape, np.nan)
    any_resp = False
    resp: list[list[str | None]] = []
    for i, pid in enumerate(keep_prompts):
        d = by_prompt[pid]
        line: list[str | None] = []
        for j, m in enumerate(keep_models):
            o = d[m]
            if o.quality is None:
                dropped.null_quality += 1
            else:
                q[i, j] = o.quality
            if o.cost_usd is not None:
                c[i, j] = o.cost_usd
            if o.input_tokens is not None:
                ti[i, j] = o.input_tokens
            if o.output_tokens is not None:
                to[i, j] = o.output_tokens
            if o.latency_ms is not None:
                lat[i, j] = o.latency_ms
            if o.response is not None:
                any_resp = True
            line.append(o.response)
        resp.append(line)
    return OutcomeTable(
        prompts=[prompts[p] for p in keep_prompts],
        models=keep_models,
        quality=q,
        cost=c,
        input_tokens=ti,
        output_tokens=to,
        latency_ms=lat,
        responses=resp if any_resp else None,
        dropped=dropped,
    )


def load_table(paths: Iterable[str | Path], **kw: Any) -> OutcomeTable:
    """:func:`read_outcomes` then :func:`to_table`; keyword arguments go to either."""
    known = kw.pop("known_models", None)
    return to_table(read_outcomes(paths, known_models=known), **kw)


def resolve_costs(table: OutcomeTable, per_call: dict[str, float] | None = None) -> tuple[Any, str, list[str]]:
    """The cost of every (prompt, model) as a full matrix, its unit, and notes for the report.

    ``per_call`` sets a model's cost per call in USD, replacing the data's. A model with some
    costs missing gets its own mean for them. When the data has no cost at all and there are
    exactly two models, cost is counted as calls to the stronger one (RouteLLM's convention:
    strong = 1, weak = 0). Otherwise a model with no known cost is a :class:`DataError`.
    """
    import numpy as np

    cost = table.cost.copy()
    notes: list[str] = []
    per_call = dict(per_call or {})
    for m in per_call:
        if m not in table.models:
            raise DataError(f"cost given for model '{m}', which the data does not have (has: {', '.join(table.models)})")
    for j, m in enumerate(table.models):
        if m in per_call:
            cost[:, j] = per_call[m]
    unknown = [j for j in range(len(table.models)) if np.isnan(cost[:, j]).all()]
    if unknown and len(unknown) == len(table.models) == 2:
        strong = int(np.argmax(table.quality.mean(axis=0)))
        cost[:, :] = 0.0
        cost[:, strong] = 1.0
        notes.append(f"no costs in the data: cost counts calls to the strong model ({table.models[strong]})")
        return cost, "strong-model calls", notes
    if unknown:
        names = ", ".join(table.models[j] for j in unknown)
        raise DataError(f"no cost known for {names}: give each a cost per call (--cost MODEL=USD)")
    for j, m in enumerate(table.models):
        col = cost[:, j]
        gaps = np.isnan(col)
        if gaps.any():
            col[gaps] = np.nanmean(col)
            notes.append(f"{int(gaps.sum())} call(s) of {m} had no cost; counted at its mean")
    return cost, "usd", notes
