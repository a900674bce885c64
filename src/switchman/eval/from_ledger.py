"""Outcome rows from production traffic: what a gateway's ledger recorded, in the outcomes format
(``switchman train --from-ledger``, ``switchman eval --from-ledger``), so a team can evaluate
strategies on its own traffic and retrain its router.

The source is a ledger URL (``sqlite:///FILE``, ``postgresql://...``), a SQLite ledger file, or a
``switchman.yaml`` whose ``ledger.url`` is used (as ``switchman spend --config`` finds it). It is
only read: a file or database that is not a switchman ledger is refused before anything opens it,
so a wrong path never gets an empty ledger created in it.

Which requests give rows (the others are counted, by reason, and reported):

- requests answered from the cache (``cache`` hit or semantic-hit: no model answered) and the
  gateway's own judge calls (tag ``switchman=cache-verify``) are left out;
- a request needs its prompt body (kept with ``log: {bodies: true}``, for ``log.retention_days``),
  whole: a prompt cut at ``log.max_body_kb`` is left out (an answer cut there is kept as no
  response);
- a request no model answered (every attempt failed for the provider's reasons, or none was
  made) has nothing to say about a model.

Rows, one per (prompt, model):

- ``prompt``: the text a learned router reads at serving time (``routing.base.prompt_text``: the
  system prompt, then every message's text) from the client's own body, decoded in its dialect
  (OpenAI or Anthropic); a body kept as plain text is the prompt as it is. For a one-turn request
  without a system prompt that is the user's message. Training on what the router will see avoids
  a skew between training and serving.
- ``prompt_id``: a hash of that text, not the request id: the same prompt sent to several models
  (an experiment's arms, a cascade, a fallback, a repeated question) lines up as one prompt with
  an outcome per model, which is what comparing models needs. Repeats of a (prompt, model) are
  merged: the mean of their known qualities, costs and token counts, the latest answer.
- ``model``, ``cost_usd``, ``input_tokens``, ``output_tokens``: the attempt's (judge calls and
  hedges cancelled before they answered give no row).
- ``response``: the answer kept for the attempt that answered; other attempts' answers are not kept.
- ``task``: the request's tag ``task_tag`` when given, else its route's name (the first request's,
  for a prompt seen on several).
- ``split``: null, or with ``test_share`` "test" for that share of prompts by a hash of the prompt
  (stable across runs), else "train".
- ``quality``:
  * the attempt that answered: the mean score of the request's feedback of metric ``quality``
    (``POST /v1/feedback``; feedback on an episode counts for the request it was given on, the
    episode's latest), else null;
  * an answer a cascade rejected (error ``rejected``): 0;
  * a failed attempt the prompt could have caused (``context_window``, ``content_filter``,
    ``bad_request``, ``timeout``): 0;
  * a failed attempt the provider caused (rate limited, overloaded, server error, connection,
    auth, a cut stream...): no row, counted: it says nothing about the model on this prompt;
  * an answer that lost a hedge race (``hedge_lost``), or any other: null (unknown).

Null quality stays null in the rows (and in an ``--export``); ``train`` and ``eval`` leave such
rows out (:meth:`LedgerOutcomes.usable`) rather than count them as wrong, and say how many.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

import orjson

from ..accounting.records import from_pusd
from ..errors import ConfigError, SwitchmanError
from ..outcomes import FIELDS, DataError, Outcome

CACHE_HITS = ("hit", "semantic-hit")
INTERNAL_TAG = ("switchman", "cache-verify")  # the gateway's own judge calls (semantic cache)
PROMPT_FAILURES = frozenset({"context_window", "content_filter", "bad_request", "timeout"})
UNANSWERED = frozenset({"cancelled"})  # a hedge cancelled before it answered: nothing to score
NO_VERDICT = frozenset({"hedge_lost"})  # answered, not sent, not judged
PAGE = 1000  # requests per query
IN_CHUNK = 900  # ids per IN (...) list: under SQLite's variable limit

# skip reasons, in the order they are checked (and reported)
CACHE = "answered from the cache (no model called)"
INTERNAL = "the gateway's own cache-verify judge calls"
NO_BODY = "no kept prompt body (log: {bodies: true} was off, or the body was pruned after log.retention_days)"
CUT = "prompt body cut at log.max_body_kb"
NO_TEXT = "no prompt text to read"
NO_CALL = "no model answered (every attempt failed, or none was made)"


class LedgerUnavailable(SwitchmanError):
    """The ledger could not be opened or read (unreachable, a driver missing): a runtime failure,
    as against a source that is not a ledger (:class:`~switchman.outcomes.DataError`)."""


@dataclass(slots=True)
class LedgerOutcomes:
    """The outcome rows a ledger gave, and an account of every request that gave none."""

    source: str  # the ledger's URL, any password hidden
    rows: list[Outcome] = field(default_factory=list)
    requests: int = 0  # requests read (in the time range)
    used: int = 0  # requests that gave rows
    skipped: Counter = field(default_factory=Counter)  # reason -> requests
    outages: int = 0  # failed attempts left out (the provider's failure, not the model's answer)
    answers_cut: int = 0  # answers cut at log.max_body_kb, kept as no response
    merged: int = 0  # repeated (prompt, model) outcomes merged into one row

    def lines(self) -> list[str]:
        """What was read and what was left out, for the command's notes."""
        models = len({r.model for r in self.rows})
        prompts = len({r.prompt_id for r in self.rows})
        out = [f"ledger {self.source}: {self.requests} request(s); {self.used} gave {len(self.rows)} outcome row(s) "
               f"({prompts} prompt(s), {models} model(s))"]
        if self.skipped:
            out.append(f"skipped {sum(self.skipped.values())} request(s): "
                       + "; ".join(f"{n} {why}" for why, n in self.skipped.items()))
        if self.outages:
            out.append(f"left out {self.outages} failed attempt(s) the provider caused (rate limits, outages): "
                       "they say nothing about the model's answer")
        if self.merged:
            out.append(f"merged {self.merged} repeated (prompt, model) outcome(s) into their prompt's row")
        if self.answers_cut:
            out.append(f"{self.answers_cut} answer(s) cut at log.max_body_kb: kept without their response")
        return out

    def check(self) -> None:
        """A :class:`DataError` saying why when the ledger gave no rows at all."""
        if not self.rows:
            why = "; ".join(f"{n} {w}" for w, n in self.skipped.items()) or "none in this time range"
            raise DataError(f"no usable outcome rows in the ledger {self.source}: {self.requests} request(s); {why}")

    def usable(self, known: Iterable[str] | None = None) -> tuple[list[Outcome], list[str]]:
        """The rows ``train`` and ``eval`` can use: those with a quality (and, given ``known``, of
        a model it names), with a note for each kind left out. A :class:`DataError` when none is."""
        self.check()
        rows = [r for r in self.rows if r.quality is not None]
        notes = []
        if len(rows) < len(self.rows):
            notes.append(f"left out {len(self.rows) - len(rows)} outcome(s) with no quality (no feedback, no cascade "
                         "verdict) rather than count them as wrong")
        if not rows:
            raise DataError(f"none of the ledger's {len(self.rows)} outcome row(s) has a quality: send feedback "
                            "(POST /v1/feedback) on answers, or let a cascade judge them")
        if known is not None:
            keep = set(known)
            other = sorted({r.model for r in rows} - keep)
            if other:
                rows = [r for r in rows if r.model in keep]
                notes.append(f"left out the ledger's outcomes of model(s) the router does not know: {', '.join(other)}")
        return rows, notes


# -- where the ledger is -----------------------------------------------------------------------------
def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages, reports and a router's sources)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def ledger_url(source: str) -> str:
    """The ledger URL ``source`` names (see the module doc), checked to be a ledger when it is a
    SQLite file; a :class:`DataError` saying what it is otherwise."""
    if source.startswith(("postgresql://", "postgres://")):
        return source
    if source.startswith("sqlite:"):
        from ..accounting.sqlite import path_of

        try:
            _check_sqlite(path_of(source), source)
        except ValueError as e:
            raise DataError(str(e)) from None
        return source
    p = Path(source)
    if not p.exists():
        raise DataError(f"{source}: no such file (give a ledger URL sqlite:///FILE or postgresql://..., "
                        "a SQLite ledger file, or a switchman.yaml)")
    if p.is_file():
        with p.open("rb") as f:
            head = f.read(16)
        if head == b"SQLite format 3\x00":
            _check_sqlite(str(p), source)
            return f"sqlite:///{p.resolve()}"
        if p.suffix.lower() in (".yaml", ".yml"):
            from ..accounting.cli import load_settings

            try:
                url = load_settings(str(p)).ledger.url
            except ConfigError as e:
                raise DataError(f"{source}: {e}") from None
            try:
                return ledger_url(url)
            except DataError as e:
                raise DataError(f"{source}: {e}") from None
    raise DataError(f"{source} is not a ledger: give a SQLite ledger file, a switchman.yaml, "
                    "or a ledger URL (sqlite:///FILE, postgresql://...)")


def _check_sqlite(path: str, source: str) -> None:
    """``path`` is a SQLite switchman ledger: read only, so nothing is created or migrated if not."""
    if path == ":memory:":
        raise DataError(f"{source}: an in-memory ledger keeps nothing to read")
    if not Path(path).is_file():
        raise DataError(f"{source}: no ledger at {path}")
    try:
        db = sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True)
        try:
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.DatabaseError:
        raise DataError(f"{source} is not a ledger: not a SQLite database") from None
    if not {"requests", "attempts", "schema_version"} <= names:
        raise DataError(f"{source} is a SQLite database but not a switchman ledger (no requests table)")


async def _check_postgres(url: str) -> None:
    """The database has a ledger (``requests``, in the URL's schema): opening the store would
    otherwise create one in whatever database the URL names."""
    try:
        import asyncpg

        from ..accounting.postgres import split_url
    except ImportError:
        raise LedgerUnavailable("a postgresql:// ledger needs asyncpg: pip install 'switchman[postgres]'") from None
    dsn, schema = split_url(url)
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except Exception as e:  # noqa: BLE001 - refused, unknown host, bad password: all "cannot open"
        raise LedgerUnavailable(f"cannot open the ledger {safe_url(url)}: {e}") from None
    try:
        found = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".requests' if schema else "requests")
    finally:
        await conn.close()
    if found is None:
        raise DataError(f"{safe_url(url)} has no switchman ledger (no requests table"
                        + (f" in schema {schema})" if schema else ")"))


# -- reading -----------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Request:
    rid: str
    ts: float
    route: str | None
    model: str | None
    tags: dict
    cache: str | None
    episode: str | None
    dialect: str | None
    body: tuple[str, str | None, bool] | None  # (prompt, answer, cut)


@dataclass(slots=True)
class _Attempt:
    role: str
    model: str
    error: str | None
    input_tokens: int
    output_tokens: int
    cost_pusd: int


@dataclass(slots=True)
class _Seen:
    """One attempt's outcome, before repeats of its (prompt, model) are merged."""

    prompt_id: str
    text: str
    model: str
    quality: float | None
    cost: float
    input_tokens: int
    output_tokens: int
    response: str | None
    task: str | None
    rid: str


_REQUESTS = ("SELECT r.request_id, r.ts, r.route, r.model, r.tags, r.cache, r.episode, r.dialect, "
             "b.request_id, b.prompt, b.answer, b.truncated FROM requests r "
             "LEFT JOIN bodies b ON b.request_id = r.request_id")


def load(source: str, **kw) -> LedgerOutcomes:
    """:func:`read` the ledger ``source`` names (a URL, a SQLite file or a config file)."""
    return asyncio.run(read(ledger_url(source), **kw))


async def read(url: str, *, task_tag: str | None = None, test_share: float | None = None,
               since: float | None = None, until: float | None = None, metric: str = "quality") -> LedgerOutcomes:
    """Every request of the ledger at ``url`` in ``[since, until)`` as outcome rows (module doc)."""
    from ..accounting.store import open_store

    if url.startswith(("postgresql:", "postgres:")):
        await _check_postgres(url)
    out = LedgerOutcomes(safe_url(url))
    try:
        store = open_store(url)
        await store.open()
    except Exception as e:  # noqa: BLE001 - unreachable, refused, a driver missing
        raise LedgerUnavailable(f"cannot open the ledger {safe_url(url)}: {e}") from None
    seen: list[_Seen] = []
    try:
        cursor: tuple[float, str] | None = None
        while True:
            page = await _page(store, since, until, cursor)
            if not page:
                break
            cursor = (page[-1].ts, page[-1].rid)
            out.requests += len(page)
            seen += await _outcomes(store, page, out, task_tag, metric)
            if len(page) < PAGE:
                break
    finally:
        await store.close()
    out.rows = _merge(seen, test_share, out)
    return out


async def _page(store, since: float | None, until: float | None, cursor: tuple[float, str] | None) -> list[_Request]:
    where, args = [], []
    if since is not None:
        where.append("r.ts >= ?")
        args.append(since)
    if until is not None:
        where.append("r.ts < ?")
        args.append(until)
    if cursor is not None:
        where.append("(r.ts > ? OR (r.ts = ? AND r.request_id > ?))")
        args += [cursor[0], cursor[0], cursor[1]]
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await store.fetch(f"{_REQUESTS}{cond} ORDER BY r.ts, r.request_id LIMIT ?", [*args, PAGE])
    return [_Request(r[0], float(r[1]), r[2], r[3], orjson.loads(r[4]) if r[4] else {}, r[5], r[6], r[7],
                     (r[9] or "", r[10], bool(r[11])) if r[8] is not None else None) for r in rows]


async def _outcomes(store, page: Sequence[_Request], out: LedgerOutcomes, task_tag: str | None,
                    metric: str) -> list[_Seen]:
    """The outcomes of one page of requests; the skipped ones counted on ``out``."""
    keep: list[tuple[_Request, str]] = []
    for r in page:
        why, text = _readable(r, out)
        if why is not None:
            out.skipped[why] += 1
        else:
            keep.append((r, text))
    attempts = await _attempts(store, [r.rid for r, _ in keep])
    scores = await _feedback(store, [r for r, _ in keep], metric)
    seen: list[_Seen] = []
    for r, text in keep:
        got = _rows_of(r, text, attempts.get(r.rid, []), scores.get(r.rid, []), task_tag, out)
        if not got:
            out.skipped[NO_CALL] += 1
            continue
        out.used += 1
        seen += got
    return seen


def _readable(r: _Request, out: LedgerOutcomes) -> tuple[str | None, str]:
    """Why ``r`` gives no rows (a skip reason), or None and its prompt's text."""
    if r.cache in CACHE_HITS:
        return CACHE, ""
    if r.tags.get(INTERNAL_TAG[0]) == INTERNAL_TAG[1]:
        return INTERNAL, ""
    if r.body is None:
        return NO_BODY, ""
    prompt, _, cut = r.body
    text, was_json = prompt_of(prompt, r.dialect)
    if cut and not was_json:  # a JSON body cut short no longer parses
        return CUT, ""
    if not text or not text.strip():
        return NO_TEXT, ""
    return None, text


def prompt_of(body: str, dialect: str | None) -> tuple[str | None, bool]:
    """The prompt's text from a kept body, and whether the body was JSON. A JSON object is the
    client's request, decoded in its dialect (the other one if that fails) and read as a learned
    router reads it; anything else is the prompt's own text (None for JSON no dialect accepts)."""
    from ..dialects import dialect_for
    from ..routing.base import prompt_text

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, False
    if not isinstance(doc, dict):
        return body, True
    kinds = [dialect] if dialect in ("openai", "anthropic") else []
    for kind in kinds + [k for k in ("openai", "anthropic") if k not in kinds]:
        try:
            return prompt_text(dialect_for(kind).decode(doc)), True
        except Exception:  # noqa: BLE001 - InvalidRequest and the like: not this dialect's body
            continue
    return None, True


async def _attempts(store, ids: Sequence[str]) -> dict[str, list[_Attempt]]:
    """Each request's attempts, in the order they started."""
    out: dict[str, list[_Attempt]] = {}
    for i in range(0, len(ids), IN_CHUNK):
        part = ids[i:i + IN_CHUNK]
        rows = await store.fetch("SELECT request_id, role, model, error, input_tokens, output_tokens, cost_pusd "
                                 f"FROM attempts WHERE request_id IN ({', '.join('?' * len(part))}) "
                                 "ORDER BY request_id, idx", part)
        for rid, role, model, error, tin, tout, cost in rows:
            out.setdefault(rid, []).append(_Attempt(role, model, error, int(tin), int(tout), int(cost)))
    return out


async def _feedback(store, reqs: Sequence[_Request], metric: str) -> dict[str, list[float]]:
    """Feedback scores of ``metric`` per request: given on the request, or on its episode while it
    was the episode's latest request (the feedback row keeps that request's time)."""
    out: dict[str, list[float]] = {}
    ids = [r.rid for r in reqs]
    for i in range(0, len(ids), IN_CHUNK):
        part = ids[i:i + IN_CHUNK]
        rows = await store.fetch(f"SELECT request_id, score FROM feedback WHERE metric = ? AND request_id IN "
                                 f"({', '.join('?' * len(part))})", [metric, *part])
        for rid, score in rows:
            out.setdefault(rid, []).append(float(score))
    by_episode = {(r.episode, r.ts): r.rid for r in reqs if r.episode}
    episodes = sorted({e for e, _ in by_episode})
    for i in range(0, len(episodes), IN_CHUNK):
        part = episodes[i:i + IN_CHUNK]
        rows = await store.fetch("SELECT episode, request_ts, score FROM feedback WHERE request_id IS NULL AND "
                                 f"metric = ? AND episode IN ({', '.join('?' * len(part))})", [metric, *part])
        for ep, rts, score in rows:
            rid = by_episode.get((ep, rts))
            if rid is not None:
                out.setdefault(rid, []).append(float(score))
    return out


def _rows_of(r: _Request, text: str, attempts: Sequence[_Attempt], scores: Sequence[float],
             task_tag: str | None, out: LedgerOutcomes) -> list[_Seen]:
    """One request's outcomes, one per model it called (the quality rules of the module doc)."""
    answer_idx = next((i for i in range(len(attempts) - 1, -1, -1) if attempts[i].model == r.model
                       and attempts[i].error is None and attempts[i].role != "judge"), None)
    _, answer, cut = r.body  # type: ignore[misc]
    task = r.tags.get(task_tag) if task_tag else r.route
    pid = prompt_id(text)
    by_model: dict[str, _Seen] = {}
    for i, a in enumerate(attempts):
        if a.role == "judge" or a.error in UNANSWERED:
            continue
        response = None
        if i == answer_idx:
            quality = sum(scores) / len(scores) if scores else None
            if cut:
                out.answers_cut += 1
            else:
                response = answer or None
        elif a.error == "rejected" or a.error in PROMPT_FAILURES:
            quality = 0.0
        elif a.error is None or a.error in NO_VERDICT:
            quality = None
        else:
            out.outages += 1
            continue
        if a.model in by_model and i != answer_idx:
            continue  # a model called twice (a retry): its first outcome stands, unless the later one answered
        by_model[a.model] = _Seen(pid, text, a.model, quality, float(from_pusd(a.cost_pusd)), a.input_tokens,
                                  a.output_tokens, response, task, r.rid)
    return list(by_model.values())


def prompt_id(text: str) -> str:
    """A prompt's id: a hash of its text, so every request of the same prompt shares it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def split_of(pid: str, test_share: float | None) -> str | None:
    """"test" for about ``test_share`` of prompt ids (by their hash: the same every run), else "train"."""
    if test_share is None:
        return None
    h = int(hashlib.sha256(pid.encode()).hexdigest()[:8], 16) / 2**32
    return "test" if h < test_share else "train"


def _merge(seen: Sequence[_Seen], test_share: float | None, out: LedgerOutcomes) -> list[Outcome]:
    """One row per (prompt, model): repeats averaged (known values only), the latest answer kept;
    a prompt's task is that of its first request."""
    groups: dict[tuple[str, str], list[_Seen]] = {}
    task: dict[str, str | None] = {}
    for s in seen:  # in ledger order (time): the first request of a prompt names its task
        groups.setdefault((s.prompt_id, s.model), []).append(s)
        task.setdefault(s.prompt_id, s.task)
    rows = []
    for (pid, model), g in groups.items():
        out.merged += len(g) - 1
        q = [s.quality for s in g if s.quality is not None]
        last = g[-1]
        rows.append(Outcome(
            prompt_id=pid, prompt=last.text, model=model, quality=sum(q) / len(q) if q else None,
            task=task[pid], split=split_of(pid, test_share), cost_usd=sum(s.cost for s in g) / len(g),
            input_tokens=round(sum(s.input_tokens for s in g) / len(g)),
            output_tokens=round(sum(s.output_tokens for s in g) / len(g)),
            response=next((s.response for s in reversed(g) if s.response is not None), None),
            where=f"ledger request {g[0].rid}",
        ))
    return rows


# -- writing -----------------------------------------------------------------------------------------
def write_rows(path: str | Path, rows: Iterable[Outcome]) -> int:
    """Write ``rows`` in the outcomes format (JSON Lines, gzip'd when ``path`` ends in .gz); how many."""
    p = Path(path)
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    n = 0
    with opener(p, "wb") as f:  # type: ignore[operator]
        for r in rows:
            f.write(orjson.dumps({k: getattr(r, k) for k in FIELDS}) + b"\n")
            n += 1
    return n
