"""The accounting part of ``/admin``: plain async handlers ``(method, path, query, body) -> (status,
dict)`` over an ``Accountant``. The HTTP layer checks the admin key and encodes the dict as JSON.

| request | answer |
|---|---|
| ``GET /admin/keys[?all=1]`` | ``{"data": [key, ...]}`` (never a secret or a hash; ``all`` adds revoked keys) |
| ``POST /admin/keys`` ``{"name", "budget": "50/month", "rpm", "tpm", "routes": [..], "expires": "2026-12-31", "user", "tags": {..}}`` | 201 ``{"key": "sk-sm-...", ...}``: the only time the secret is shown |
| ``DELETE /admin/keys/{id or name}`` | the revoked key; 404 if there is none |
| ``GET /admin/spend?by=model|key|user|tag|route|day|provider&since=DATE&until=DATE`` | ``{"by", "since", "until", "rows": [..], "total": {..}}``; since defaults to the start of this month (UTC) |
| ``GET /admin/budgets`` | ``{"data": [budget with this period's spent and reserved, ...]}`` |
| ``GET /admin/requests?since=&until=&key=&user=&tag=&route=&model=&status=&cache=&cost_above=&feedback=&limit=&cursor=`` | ``{"data": [request, ...], "next_cursor"}``, newest first (``requestlog.py``) |
| ``GET /admin/requests/{id}`` | one request with ``attempt_list`` (role, status, error, detail), ``feedback`` and kept ``bodies`` |

Errors answer ``{"error": {"type", "message"}}`` with 400, 404 or 405.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qs, parse_qsl, unquote

import orjson

from .dates import iso, month_start, parse_when
from .facade import Accountant
from .requestlog import BadQuery, get_request, list_requests, satisfaction_by
from .store import GROUPINGS, SpendRow

Answer = tuple[int, dict]


def _error(status: int, kind: str, message: str) -> Answer:
    return status, {"error": {"type": kind, "message": message}}


class AdminApi:
    def __init__(self, accountant: Accountant) -> None:
        self.acc = accountant

    def handles(self, path: str) -> bool:
        return path in ("/admin/keys", "/admin/spend", "/admin/budgets", "/admin/requests") or \
            path.startswith(("/admin/keys/", "/admin/requests/"))

    async def __call__(self, method: str, path: str, query: str, body: bytes | None) -> Answer:
        q = {k: v[-1] for k, v in parse_qs(query or "").items()}
        if path == "/admin/keys":
            if method == "GET":
                keys = await self.acc.list_keys(include_revoked=q.get("all") in ("1", "true", "yes"))
                return 200, {"data": [_key(k) for k in keys]}
            if method == "POST":
                return await self._create(body)
            return _error(405, "invalid_request", f"{method} is not allowed on /admin/keys (GET, POST)")
        if path.startswith("/admin/keys/"):
            if method != "DELETE":
                return _error(405, "invalid_request", f"{method} is not allowed on {path} (DELETE)")
            ident = unquote(path[len("/admin/keys/"):])
            k = await self.acc.revoke_key(ident)
            if k is None:
                return _error(404, "not_found", f"no key with id or name '{ident}'")
            return 200, _key(k)
        if path == "/admin/spend":
            if method != "GET":
                return _error(405, "invalid_request", "only GET is allowed on /admin/spend")
            return await self._spend(q)
        if path == "/admin/requests" or path.startswith("/admin/requests/"):
            if method != "GET":
                return _error(405, "invalid_request", f"only GET is allowed on {path}")
            return await self._requests(path, query)
        if path == "/admin/budgets":
            if method != "GET":
                return _error(405, "invalid_request", "only GET is allowed on /admin/budgets")
            return 200, {"data": await self.acc.budget_status()}
        return _error(404, "not_found", f"no such admin endpoint: {path}")

    async def _requests(self, path: str, query: str) -> Answer:
        store = self.acc.store
        if store is None:
            return _error(404, "not_found", "the request log needs the ledger (ledger: {enabled: true})")
        if path == "/admin/requests":
            q: dict[str, str] = {}
            for k, v in parse_qsl(query or "", keep_blank_values=True):
                if k in q:
                    return _error(400, "invalid_request", f"filter {k!r} given twice")
                q[k] = v
            try:
                return 200, await list_requests(store, q, self.acc._now())
            except BadQuery as e:
                return _error(400, "invalid_request", str(e))
        rid = unquote(path[len("/admin/requests/"):])
        got = await get_request(store, rid)
        if got is None:
            return _error(404, "not_found", f"no request {rid[:100]!r} in the ledger")
        return 200, got

    async def _create(self, body: bytes | None) -> Answer:
        try:
            data = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as e:
            return _error(400, "invalid_request", f"body is not valid JSON: {e}")
        if not isinstance(data, dict):
            return _error(400, "invalid_request", "body must be a JSON object")
        allowed = {"name", "budget", "rpm", "tpm", "routes", "expires", "user", "tags"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            return _error(400, "invalid_request", f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        try:
            secret, rec = await self.acc.create_key(**data)
        except ValueError as e:
            return _error(400, "invalid_request", str(e))
        return 201, {"key": secret, **_key(rec)}

    async def _spend(self, q: dict[str, str]) -> Answer:
        by = q.get("by", "model")
        if by not in GROUPINGS:
            return _error(400, "invalid_request", f"by must be one of {', '.join(GROUPINGS)}, not '{by}'")
        now = self.acc._now()
        try:
            since = parse_when(q["since"], now) if "since" in q else month_start(now)
            until = parse_when(q["until"], now) if "until" in q else None
        except ValueError as e:
            return _error(400, "invalid_request", str(e))
        rows = await self.acc.spend(by, since, until)
        out = spend_report(by, since, until, rows, await satisfaction_by(self.acc.store, by, since, until))
        led = self.acc.ledger
        if led is not None:  # entries not in these figures yet, and entries set aside (see ledger.py)
            out["ledger"] = {"pending": led.pending, "quarantined": led.stats.quarantined}
        return 200, out


def spend_report(by: str, since: float | None, until: float | None, rows: list[SpendRow],
                 satisfaction: dict | None = None) -> dict:
    """The JSON shape of a spend report (``/admin/spend`` and ``switchman spend --json``), with
    each group's feedback (metric quality: count and mean score) where there is any."""
    sat = satisfaction or {}
    out = {"by": by, "since": iso(since), "until": iso(until),
           "rows": [{**r.as_dict(), "feedback": sat.get(r.group, (0, None))[0],
                     "satisfaction": sat.get(r.group, (0, None))[1]} for r in rows],
           "total": total_of(rows).as_dict()}
    if by == "tag":
        out["note"] = "a request with several tags counts under each, so the total may exceed the spend"
    return out


def total_of(rows: list[SpendRow]) -> SpendRow:
    return SpendRow(None, sum(r.requests for r in rows), sum(r.input_tokens for r in rows),
                    sum(r.output_tokens for r in rows), sum((r.cost for r in rows), Decimal(0)),
                    sum((r.baseline for r in rows), Decimal(0)), None,
                    sum((r.cache_saved for r in rows), Decimal(0)))


def _key(k) -> dict:
    d = k.as_dict()
    for f in ("created", "expires", "revoked"):
        d[f] = iso(d[f])
    return d
