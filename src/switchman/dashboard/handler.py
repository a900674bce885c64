"""``GET /dashboard``: the web dashboard, served by the gateway itself.

Pages: overview, spend, requests (the log, with a click through to one request's attempts), live
routing state, budgets, feedback. Aggregates come from the rollups (``accounting/reports.py``),
the log from indexed pages of the request table (``accounting/requestlog.py``); no page scans the
ledger. Static files (uPlot 1.6.32, MIT, vendored with its licence; the dashboard's own CSS and
JS) are served from the package: it works offline, with no Node build step.

Login is the admin key, once, into a signed HttpOnly cookie (``auth.py``). A page without a valid
session redirects to the login form. With no admin key configured (loopback only), no login.
"""

from __future__ import annotations

import os
import time
from importlib import resources
from urllib.parse import parse_qsl

from ..accounting import reports
from ..accounting.dates import parse_when
from ..accounting.requestlog import BadQuery, get_request, list_requests
from ..http.server import Request, Response
from . import pages
from .auth import PRELOGIN, SESSION, Sessions, cookies, form, set_cookie

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".LICENSE": "text/plain; charset=utf-8"}
_SECURITY = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class Dashboard:
    def __init__(self, gateway, metering, telemetry, admin_key: str | None) -> None:
        self.gateway = gateway
        self.metering = metering
        self.telemetry = telemetry
        self.sessions = Sessions(admin_key)
        self._static: dict[str, bytes] = {}
        self._pages = {"/dashboard": self._overview, "/dashboard/spend": self._spend,
                       "/dashboard/requests": self._requests, "/dashboard/live": self._live,
                       "/dashboard/budgets": self._budgets, "/dashboard/feedback": self._feedback}

    @staticmethod
    def handles(path: str) -> bool:
        return path == "/dashboard" or path.startswith("/dashboard/")

    async def __call__(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/dashboard/static/"):
            return self._file(path[len("/dashboard/static/"):])
        if path == "/dashboard/login":
            return self._login(req)
        if path == "/dashboard/logout" and req.method == "POST":
            return self._logout(req)
        token = cookies(req.headers.get("cookie")).get(SESSION)
        if not self.sessions.valid(token):
            return Response(303, b"", {"location": "/dashboard/login", "cache-control": "no-store"})
        csrf = None if self.sessions.open else self.sessions.csrf(token)
        handler = self._pages.get(path)
        if handler is None and path.startswith("/dashboard/requests/"):
            return await self._request(path[len("/dashboard/requests/"):], csrf)
        if handler is None or req.method not in ("GET", "HEAD"):
            return self._html(pages.page("", "Not found", "<p>No such page.</p>", csrf), 404)
        if self.metering is None or self.metering.accountant.ledger is None:
            return self._html(pages.page("", "No ledger", "<p>The dashboard reads the ledger: configure "
                                         "<code>ledger:</code> (on by default in a config file).</p>", csrf))
        q = dict(parse_qsl(req.query or "", keep_blank_values=False))
        return await handler(q, csrf)

    # -- login --------------------------------------------------------------------------------------
    def _login(self, req: Request) -> Response:
        if self.sessions.open:
            return Response(303, b"", {"location": "/dashboard"})
        if req.method == "POST":
            f = form(req.body)
            expected = cookies(req.headers.get("cookie")).get(PRELOGIN)
            if not expected or f.get("csrf") != expected:
                return self._login_page("the form expired: log in again", 403)
            if not self.sessions.check_key(f.get("key", "")):
                return self._login_page("invalid admin key", 200)  # the form again, saying so
            return Response(303, b"", {"location": "/dashboard", "cache-control": "no-store",
                                       "set-cookie": set_cookie(SESSION, self.sessions.new(), int(self.sessions.ttl))})
        return self._login_page(None, 200)

    def _login_page(self, error: str | None, status: int) -> Response:
        token = os.urandom(16).hex()
        r = self._html(pages.login(error, token), status)
        r.headers["set-cookie"] = set_cookie(PRELOGIN, token, 3600, "/dashboard/login")
        return r

    def _logout(self, req: Request) -> Response:
        token = cookies(req.headers.get("cookie")).get(SESSION)
        if not self.sessions.valid(token) or form(req.body).get("csrf") != self.sessions.csrf(token):
            return self._html(pages.page("", "Refused", "<p>That request did not come from this dashboard.</p>", None),
                              403)
        return Response(303, b"", {"location": "/dashboard/login", "set-cookie": set_cookie(SESSION, "", 0)})

    # -- pages --------------------------------------------------------------------------------------
    @property
    def _store(self):
        return self.metering.accountant.store

    def _now(self) -> float:
        return self.metering.accountant._now() if self.metering is not None else time.time()

    async def _overview(self, q: dict, csrf) -> Response:
        return self._html(pages.overview(await reports.overview(self._store, self._now()), csrf))

    async def _spend(self, q: dict, csrf) -> Response:
        by = q.get("by", "model")
        now = self._now()
        try:
            since = parse_when(q["since"], now) if q.get("since") else reports.month_start(now)
            rows = await reports.by_dim(self._store, by, since, None)
        except ValueError as e:
            return self._html(pages.page("spend", "Spend", f'<p class="error">{pages.h(e)}</p>', csrf), 400)
        days = rows if by == "day" else await reports.by_dim(self._store, "day", since, None)
        return self._html(pages.spend(by, q.get("since", ""), rows, days, csrf))

    async def _requests(self, q: dict, csrf) -> Response:
        q = {k: v for k, v in q.items() if v}
        try:
            got, error = await list_requests(self._store, q, self._now()), None
        except BadQuery as e:
            got, error = {"data": []}, str(e)
        return self._html(pages.requests(q, got, error, csrf))  # the page, with the filter's problem on it

    async def _request(self, rid: str, csrf) -> Response:
        got = await get_request(self._store, rid) if self.metering is not None else None
        if got is None:
            return self._html(pages.page("requests", "Not found", f"<p>No request {pages.h(rid[:100])}.</p>", csrf), 404)
        return self._html(pages.request(got, csrf))

    async def _live(self, q: dict, csrf) -> Response:
        ex = self.gateway.executor
        names = list(self.gateway.config.models)
        state = {"pid": os.getpid(), "models": ex.outliers.snapshot(names),
                 "cooling": {m: ex.cooldowns.remaining(m) for m in names if ex.cooldowns.remaining(m) > 0},
                 "inflight": dict(ex.live.inflight),
                 "limits": {m: f"{lim._in_flight}/{lim.limit}" for m, lim in ex.limits.items()}}
        return self._html(pages.live(state, csrf))

    async def _budgets(self, q: dict, csrf) -> Response:
        acc = self.metering.accountant
        now = self._now()
        rows = await acc.budget_status()
        for b in rows:
            if b["spent_usd"] is None:
                continue
            b["used"] = float(b["spent_usd"]) / float(b["limit_usd"])
            per_day = await reports.burn(self._store, b["scope"], b["match"], now)
            b["burn_usd_per_day"] = f"{per_day:f}"
            end = parse_when(b["resets"], now) if b.get("resets") else now
            b["projected_usd"] = f"{float(b['spent_usd']) + float(per_day) * max(end - now, 0) / 86400:f}"
        return self._html(pages.budgets(rows, csrf))

    async def _feedback(self, q: dict, csrf) -> Response:
        by = q.get("by", "model") if q.get("by") in ("model", "route") else "model"
        data = await reports.satisfaction(self._store, by, self._now() - 30 * 86400)
        return self._html(pages.feedback(by, data, csrf))

    # -- plumbing -----------------------------------------------------------------------------------
    def _file(self, name: str) -> Response:
        body = self._static.get(name)
        if body is None:
            ext = next((e for e in _TYPES if name.endswith(e)), None)
            if ext is None or "/" in name or name.startswith("."):
                return Response(404, b"not found", {"content-type": "text/plain"})
            try:
                body = resources.files(__package__).joinpath("static", name).read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                return Response(404, b"not found", {"content-type": "text/plain"})
            self._static[name] = body
        ext = next(e for e in _TYPES if name.endswith(e))
        return Response(200, body, {"content-type": _TYPES[ext], "cache-control": "public, max-age=86400",
                                    "x-content-type-options": "nosniff"})

    @staticmethod
    def _html(body: bytes, status: int = 200) -> Response:
        return Response(status, body, {"content-type": "text/html; charset=utf-8", **_SECURITY})

