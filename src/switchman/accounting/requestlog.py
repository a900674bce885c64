"""The request log: the ledger's rows, queried (``GET /admin/requests``, ``/admin/requests/{id}``,
the dashboard), and feedback stored beside them (``POST /v1/feedback``).

Listing filters, each optional, combined with AND::

    since, until      a date (2026-12-01), a time (2026-12-01T10:00), or unix seconds
    key               a key id
    user, route, model, episode
    tag               NAME=VALUE
    status            200, 429, 2xx, 4xx, 5xx, or error (any failure)
    cache             miss | hit | semantic-hit | bypass | none
    cost_above        USD: only requests that cost more
    feedback          true | false: has feedback or not
    limit             1..500 (default 50)
    cursor            the ``next_cursor`` of the previous page

Newest first. The cursor is opaque (base64 of the last row's time and id), so a page never repeats
or skips rows as new ones arrive. Every filter is an indexed column or an indexed join; see
``benchmarks/dashboard.py`` for the times at 10M rows.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

import orjson

from .dates import iso, parse_when
from .records import from_pusd, to_pusd
from .store import Store, time_range

MAX_LIMIT = 500
_LIST_COLUMNS = ("request_id", "ts", "key_id", "user_id", "tags", "route", "model", "provider", "status", "error",
                 "input_tokens", "output_tokens", "cost_pusd", "latency_ms", "ttft_ms", "cache", "reason",
                 "attempts", "stream", "episode", "dialect", "estimated")
_ATTEMPT_COLUMNS = ("idx", "ts", "role", "model", "provider", "status", "error", "detail", "input_tokens",
                    "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_pusd", "latency_ms", "ttft_ms",
                    "estimated")
FILTERS = ("since", "until", "key", "user", "route", "model", "episode", "tag", "status", "cache", "cost_above",
           "feedback", "limit", "cursor")
METRIC_MAX = 64
COMMENT_MAX = 2000


class BadQuery(ValueError):
    """A filter, cursor or feedback field that cannot be used; the message names it."""


def _conditions(q: Mapping[str, str], now: float) -> tuple[list[str], list]:
    unknown = sorted(set(q) - set(FILTERS))
    if unknown:
        raise BadQuery(f"unknown filter(s) {', '.join(unknown)} (allowed: {', '.join(FILTERS)})")
    where, args = [], []
    for name, col in (("since", "r.ts >= ?"), ("until", "r.ts < ?")):
        if name in q:
            try:
                args.append(parse_when(q[name], now))
            except ValueError as e:
                raise BadQuery(f"{name}: {e}") from None
            where.append(col)
    for name, col in (("key", "key_id"), ("user", "user_id"), ("route", "route"), ("model", "model"),
                      ("episode", "episode")):
        if name in q:
            where.append(f"r.{col} = ?")
            args.append(q[name])
    if "tag" in q:
        if "=" not in q["tag"]:
            raise BadQuery(f"tag must be NAME=VALUE, not {q['tag'][:60]!r}")
        where.append("EXISTS (SELECT 1 FROM request_tags t WHERE t.request_id = r.request_id AND t.tag = ?)")
        args.append(q["tag"])
    if "status" in q:
        where.append(_status(q["status"], args))
    if "cache" in q:
        if q["cache"] == "none":
            where.append("r.cache IS NULL")
        elif q["cache"] in ("miss", "hit", "semantic-hit", "bypass"):
            where.append("r.cache = ?")
            args.append(q["cache"])
        else:
            raise BadQuery(f"cache must be miss, hit, semantic-hit, bypass or none, not {q['cache'][:40]!r}")
    if "cost_above" in q:
        try:
            usd = Decimal(q["cost_above"])
        except InvalidOperation:
            usd = Decimal(-1)
        if not usd.is_finite() or usd < 0:
            raise BadQuery(f"cost_above must be an amount of USD (0.01), not {q['cost_above'][:40]!r}")
        where.append("r.cost_pusd > ?")
        args.append(to_pusd(usd))
    if "feedback" in q:
        has = _bool("feedback", q["feedback"])
        where.append(("" if has else "NOT ") + "EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = r.request_id)")
    return where, args


def _status(v: str, args: list) -> str:
    v = v.strip().lower()
    # A class is a range: written ``+r.status`` so the planner walks the time (or route, model,
    # key) index newest first and filters, rather than sorting every 2xx row by time (at 10M rows:
    # 5 s against 2 ms).
    if v == "error":
        return "(+r.status >= 400 OR r.error IS NOT NULL)"
    if len(v) == 3 and v[0] in "12345" and v[1:] == "xx":
        lo = int(v[0]) * 100
        args.extend([lo, lo + 100])
        return "+r.status >= ? AND +r.status < ?"
    if v.isdigit() and 100 <= int(v) < 600:
        args.append(int(v))
        return "r.status = ?"
    raise BadQuery(f"status must be a code (429), a class (5xx) or error, not {v[:40]!r}")


def _bool(name: str, v: str) -> bool:
    if v.lower() in ("1", "true", "yes"):
        return True
    if v.lower() in ("0", "false", "no"):
        return False
    raise BadQuery(f"{name} must be true or false, not {v[:40]!r}")


def _cursor(c: str) -> tuple[float, str]:
    try:
        ts, _, rid = base64.urlsafe_b64decode(c.encode() + b"=" * (-len(c) % 4)).decode().partition("|")
        return float(ts), rid
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadQuery("cursor is not one this API gave out (pass next_cursor as it came)") from None


def _next_cursor(ts: float, rid: str) -> str:
    return base64.urlsafe_b64encode(f"{ts!r}|{rid}".encode()).decode().rstrip("=")


async def list_requests(store: Store, q: Mapping[str, str], now: float | None = None) -> dict:
    now = time.time() if now is None else now
    where, args = _conditions(q, now)
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        raise BadQuery(f"limit must be a whole number, not {q['limit'][:40]!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
    if "cursor" in q:
        ts, rid = _cursor(q["cursor"])
        where.append("(r.ts < ? OR (r.ts = ? AND r.request_id < ?))")
        args += [ts, ts, rid]
    cond = f"WHERE {' AND '.join(where)}" if where else ""
    sql = (f"SELECT {', '.join('r.' + c for c in _LIST_COLUMNS)}, "
           f"(SELECT COUNT(*) FROM feedback f WHERE f.request_id = r.request_id) "
           f"FROM requests r {cond} ORDER BY r.ts DESC, r.request_id DESC LIMIT ?")
    got = await store.fetch(sql, [*args, limit + 1])
    data = [_request(row) for row in got[:limit]]
    nxt = _next_cursor(got[limit - 1][1], got[limit - 1][0]) if len(got) > limit else None
    return {"data": data, "next_cursor": nxt}


def _request(row) -> dict:
    d = dict(zip(_LIST_COLUMNS, row))
    d["feedback_count"] = int(row[len(_LIST_COLUMNS)])
    d["time"] = iso(d.pop("ts"))
    d["cost_usd"] = f"{from_pusd(int(d.pop('cost_pusd'))):f}"
    d["tags"] = orjson.loads(d["tags"]) if d["tags"] else {}
    d["key"] = d.pop("key_id")
    d["user"] = d.pop("user_id")
    d["stream"], d["estimated"] = bool(d["stream"]), bool(d["estimated"])
    return d


async def get_request(store: Store, rid: str) -> dict | None:
    """One request with its attempts (why each was made, how it ended), its feedback and, when
    kept, its bodies."""
    rows = await store.fetch(f"SELECT {', '.join('r.' + c for c in _LIST_COLUMNS)}, 0 FROM requests r "
                             "WHERE r.request_id = ?", [rid])
    if not rows:
        return None
    out = _request(rows[0])
    atts = await store.fetch(f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM attempts WHERE request_id = ? ORDER BY idx",
                             [rid])
    out["attempt_list"] = [_attempt(a) for a in atts]
    fb = await store.fetch("SELECT id, ts, metric, score, comment, key_id FROM feedback WHERE request_id = ? "
                           "ORDER BY ts", [rid])
    out["feedback"] = [{"id": f[0], "time": iso(f[1]), "metric": f[2], "score": f[3], "comment": f[4], "key": f[5]}
                       for f in fb]
    out["feedback_count"] = len(fb)
    body = await store.fetch("SELECT prompt, answer, truncated FROM bodies WHERE request_id = ?", [rid])
    if body:
        out["bodies"] = {"prompt": body[0][0], "answer": body[0][1], "truncated": bool(body[0][2])}
    return out


def _attempt(row) -> dict:
    d = dict(zip(_ATTEMPT_COLUMNS, row))
    d["index"] = d.pop("idx")
    d["time"] = iso(d.pop("ts"))
    d["cost_usd"] = f"{from_pusd(int(d.pop('cost_pusd'))):f}"
    d["estimated"] = bool(d["estimated"])
    return d


# -- feedback ------------------------------------------------------------------------------------------
def parse_feedback(body: object) -> dict:
    """A feedback body checked field by field: ``request_id`` or ``episode_id``; ``score`` (0..1)
    or ``thumbs`` (up | down); optional ``metric`` (default quality), ``comment``, ``id``."""
    if not isinstance(body, dict):
        raise BadQuery("body must be a JSON object")
    allowed = {"request_id", "episode_id", "score", "thumbs", "metric", "comment", "id"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadQuery(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    rid, ep = body.get("request_id"), body.get("episode_id")
    if (rid is None) == (ep is None):
        raise BadQuery("give exactly one of request_id and episode_id")
    for name, v in (("request_id", rid), ("episode_id", ep)):
        if v is not None and (not isinstance(v, str) or not v or len(v) > 256):
            raise BadQuery(f"{name} must be a non-empty string of at most 256 characters")
    score, thumbs = body.get("score"), body.get("thumbs")
    if (score is None) == (thumbs is None):
        raise BadQuery("give exactly one of score (0..1) and thumbs (up or down)")
    if thumbs is not None:
        if thumbs not in ("up", "down"):
            raise BadQuery(f"thumbs must be 'up' or 'down', not {str(thumbs)[:40]!r}")
        score = 1.0 if thumbs == "up" else 0.0
    elif isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
        raise BadQuery(f"score must be a number from 0 to 1, not {str(score)[:40]}")
    metric = body.get("metric", "quality")
    if not isinstance(metric, str) or not metric or len(metric) > METRIC_MAX:
        raise BadQuery(f"metric must be a name of at most {METRIC_MAX} characters")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_MAX):
        raise BadQuery(f"comment must be a string of at most {COMMENT_MAX} characters")
    fid = body.get("id")
    if fid is not None and (not isinstance(fid, str) or not fid or len(fid) > 128):
        raise BadQuery("id must be a non-empty string of at most 128 characters")
    return {"request_id": rid, "episode": ep, "score": float(score), "metric": metric, "comment": comment,
            "id": fid}


class NotFound(LookupError):
    pass


async def _target(store: Store, fb: dict, key_id: str | None, admin: bool, wait: float) -> tuple | None:
    """The request (or the episode's latest request) feedback is for, as the caller may see it."""
    tries = int(wait / 0.1) + 1
    for i in range(tries):
        if fb["request_id"] is not None:
            got = await store.fetch("SELECT request_id, key_id, route, model, provider, ts, tags FROM requests "
                                    "WHERE request_id = ?", [fb["request_id"]])
        else:
            got = await store.fetch("SELECT request_id, key_id, route, model, provider, ts, tags FROM requests "
                                    "WHERE episode = ? ORDER BY ts DESC LIMIT 1", [fb["episode"]])
        if got:
            row = got[0]
            return row if admin or row[1] == key_id else None  # another key's: as unknown
        if not fresh(fb["request_id"]) or i == tries - 1:  # (``wait=0``: one look, no sleep)
            return None
        await asyncio.sleep(0.1)  # settled moments ago, maybe by another worker: not written yet
    return None


def fresh(rid: str | None, within: float = 5.0) -> bool:
    """A gateway request id made in the last ``within`` seconds (its ledger row may be in flight)."""
    if rid is None or not rid.startswith("req_"):
        return False
    try:
        return time.time() - int(rid[4:16], 16) / 1000 < within
    except ValueError:
        return False


async def add_feedback(store: Store, fb: dict, key_id: str | None, admin: bool, now: float,
                       wait: float = 2.0) -> tuple[int, dict]:
    """Store one feedback; ``(201, it)``, or ``(200, the stored one)`` when ``id`` was seen before.
    Raises ``NotFound`` for an unknown or another key's request or episode. Metric ``quality`` on
    a request also counts into the rollups (satisfaction by model and route)."""
    fid = fb["id"] or f"fb_{uuid.uuid4().hex}"
    if fb["id"] is not None:
        seen = await _existing(store, fid)
        if seen is not None:
            return 200, seen
    row = await _target(store, fb, key_id, admin, wait)
    if row is None:
        what = f"request {fb['request_id']!r}" if fb["request_id"] else f"episode {fb['episode']!r}"
        raise NotFound(f"no {what} for this key (unknown, not yet written, or another key's)")
    rid, rkey, route, model, provider, rts, tags = row
    fb["target"] = (route, model, orjson.loads(tags) if tags else None)  # for the policies that learn
    stmts = [("INSERT INTO feedback (id, ts, request_id, episode, key_id, metric, score, comment, route, model, "
              "request_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              [fid, now, fb["request_id"], fb["episode"], key_id, fb["metric"], fb["score"], fb["comment"], route,
               model, rts])]
    if fb["metric"] == "quality" and fb["request_id"] is not None:
        add = "SET feedback_n = feedback_n + 1, feedback_sum = feedback_sum + ?"
        stmts.append((f"UPDATE rollup_hour {add} WHERE bucket = ? AND route = ? AND model = ? AND provider = ? "
                      "AND key_id = ?", [fb["score"], rts - rts % 3600, route, model or "", provider or "", rkey or ""]))
        for dim, value in (("route", route), ("model", model or ""), ("key", rkey or "")):
            stmts.append((f"UPDATE rollup_day {add} WHERE dim = ? AND bucket = ? AND value = ?",
                          [fb["score"], dim, rts - rts % 86400, value]))
    try:
        await store.transact(stmts)
    except store.data_errors + _integrity(store):
        seen = await _existing(store, fid)  # the same id, sent twice at once
        if seen is None:
            raise
        return 200, seen
    return 201, {"id": fid, "request_id": fb["request_id"], "episode_id": fb["episode"], "metric": fb["metric"],
                 "score": fb["score"], "comment": fb["comment"], "time": iso(now), "route": route, "model": model}


def _integrity(store: Store) -> tuple[type[BaseException], ...]:
    import sqlite3

    return (sqlite3.IntegrityError,)


async def _existing(store: Store, fid: str) -> dict | None:
    got = await store.fetch("SELECT id, request_id, episode, metric, score, comment, ts FROM feedback WHERE id = ?",
                            [fid])
    if not got:
        return None
    f = got[0]
    return {"id": f[0], "request_id": f[1], "episode_id": f[2], "metric": f[3], "score": f[4], "comment": f[5],
            "time": iso(f[6])}


async def prune_bodies(store: Store, before: float) -> int:
    """Delete kept request bodies older than ``before``; how many went."""
    return (await store.transact([("DELETE FROM bodies WHERE ts < ?", [before])]))[0]


_SAT_COLUMNS = {"model": "r.model", "route": "r.route", "key": "r.key_id", "user": "r.user_id", "provider": "r.provider"}


async def satisfaction_by(store: Store, by: str, since: float | None, until: float | None) -> dict[str | None, tuple[int, float]]:
    """Feedback of metric ``quality`` per group of ``by`` for requests in the range: (count, mean
    score). Empty for groupings feedback has no column for (tag, day)."""
    col = _SAT_COLUMNS.get(by)
    if col is None:
        return {}
    where, args = time_range(since, until)
    where.append("f.metric = 'quality'")
    rows = await store.fetch(f"SELECT {col}, COUNT(*), AVG(f.score) FROM feedback f JOIN requests r "
                             f"ON r.request_id = f.request_id WHERE {' AND '.join(where)} GROUP BY {col}", args)
    return {g: (int(n), float(m)) for g, n, m in rows}
