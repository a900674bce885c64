"""The HTTP API over a ``Gateway``: endpoints, auth, the ``x-switchman-*`` headers, and errors
in each client's own dialect. Never a traceback: anything unexpected is logged here and answered
with a generic 500 in the client's shape.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlsplit

import orjson

from . import tokens
from .accounting.records import parse_tags
from .accounting.requestlog import BadQuery, NotFound, parse_feedback
from .dialects import dialect_for
from .dialects.base import Dialect, StreamEncoder
from .dialects.gemini import decode as gemini_decode, parse_path as gemini_path
from .errors import (BodyTooLarge, Forbidden, InvalidRequest, MethodNotAllowed, SwitchmanError, Unauthorized,
                     UnknownModel,
                     UnknownEndpoint, UnknownResource, UnsupportedMediaType)
from .accounting.responses import ResponseStore
from .dashboard.handler import Dashboard
from .dialects.anthropic_threads import ThreadStream, ThreadTurn, open_thread
from .dialects.responses_state import not_found, open_turn
from .gateway import Gateway, Reply
from .http.server import Request, Response, StreamingResponse
from .metering import Metering, new_request_id as _rid
from .streams import Opened
from .telemetry.hub import Telemetry
from .telemetry.metrics import CONTENT_TYPE as METRICS_TYPE

log = logging.getLogger("switchman")

_JSON = "application/json"
_SSE = "text/event-stream"
# Vendor headers a same-kind upstream should still see (they change the API's behaviour).
_PASSTHROUGH = ("anthropic-beta",)


class App:
    """``await app(request)`` answers one HTTP request."""

    def __init__(self, gateway: Gateway, metering: Metering | None = None, telemetry: Telemetry | None = None) -> None:
        self.gateway = gateway
        self.metering = metering  # keys, limits, budgets and the ledger; None: the admin key only
        self.telemetry = telemetry or Telemetry(gateway.config)
        self._wire(self.telemetry)
        self.dashboard = Dashboard(gateway, metering, self.telemetry, gateway.config.auth.admin_key)
        key = gateway.config.auth.admin_key
        self._key = key.encode() if key else None
        self._routes = {
            ("POST", "/v1/chat/completions"): self._openai,
            ("POST", "/chat/completions"): self._openai,  # clients whose base_url lacks /v1
            ("POST", "/v1/messages"): self._anthropic,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/completions"): self._completions,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/embeddings"): self._embeddings,
            ("POST", "/v1/responses"): self._responses,
            ("POST", "/responses"): self._responses,
            ("GET", "/v1/models"): self._models,
            ("GET", "/models"): self._models,
            ("GET", "/health/live"): self._live,
            ("GET", "/health/ready"): self._ready,
            ("GET", "/admin/breakers"): self._breakers,
            ("GET", "/admin/decisions"): self._decisions,
            ("GET", "/metrics"): self._metrics,
            ("POST", "/v1/feedback"): self._feedback,
            ("POST", "/v1/messages/count_tokens"): self._count_tokens,
            ("GET", "/admin/cache"): self._cache,
            ("DELETE", "/admin/cache"): self._cache,
            ("GET", "/admin/experiments"): self._experiments,
        }
        self._chat_paths = frozenset(p for (m, p), h in self._routes.items()
                                     if h in (self._openai, self._anthropic, self._completions, self._responses,
                                              self._embeddings))
        self._openai_d = dialect_for("openai")
        self._anthropic_d = dialect_for("anthropic")
        self._completions_d = dialect_for("completions")
        self._responses_d = dialect_for("responses")
        self._gemini_d = dialect_for("gemini")
        self._embeddings_d = dialect_for("embeddings")
        acc = gateway.config.accounting
        self.responses = ResponseStore(  # stored Responses API responses: in the ledger database, if there is one
            metering.accountant.store if metering is not None and acc is not None and acc.ledger.enabled else None,
            retention=(acc.ledger.responses_days if acc is not None else 30.0) * 86_400)
        # No key at all: only this machine may call (DNS rebinding and CSRF from a browser page),
        # unless the operator said the network is trusted.
        srv = gateway.config.server
        self._max_retry_after = gateway.config.resilience.retry.max_retry_after
        self._metrics_public = self.telemetry.settings.metrics.public
        self._loopback_only = (self._key is None and not srv.allow_public_without_key
                               and not (metering is not None and metering.accountant.required))

    def _wire(self, t: Telemetry) -> None:
        """Every finished request, decision and upstream call reaches telemetry."""
        self.gateway.decisions.listener = t.decision
        if t.metrics is not None:
            self.gateway.executor.on_call = t.calls
        if self.metering is not None:
            gw = self.gateway

            def settled(req, attempts) -> None:
                t.request_done(req, attempts)
                gw.settled(req, attempts)  # failures and costs, for the policies that learn

            self.metering.accountant.on_settled = settled

    def precheck(self, req: Request):
        """The request's head, before its body is read (``HttpServer`` calls it): refuse what needs
        no body to refuse (no or a wrong key, a foreign Host or Origin in loopback mode, a body
        that is not JSON), so an unauthenticated body is never buffered. None: go on. A virtual key
        memory does not know yet is looked up while the server holds the body back."""
        path = req.path
        if path.startswith("/health/") or (path == "/metrics" and self._metrics_public):
            return None
        gemini = _is_gemini(req.method, path)
        d = self._gemini_d if gemini else self._anthropic_d if path.startswith("/v1/messages") else self._openai_d
        h = req.headers
        try:
            if self._loopback_only:
                if not _is_loopback(h.get("host", "")):
                    raise Forbidden(f"Host {h.get('host', '')[:100]!r} refused: with no auth.admin_key set, only "
                                    "loopback hosts are served (DNS rebinding protection); set a key to serve others")
                origin = h.get("origin")
                if origin is not None and origin != "null" and not _is_loopback(urlsplit(origin).netloc):
                    raise Forbidden(f"cross-origin request from {origin[:100]!r} refused: with no auth.admin_key "
                                    "set, only pages served from loopback may call")
            if path == "/dashboard" or path.startswith("/dashboard/"):
                return None  # its own login (a form) and session cookie
            if req.method == "POST":
                _json_only(h)
            if path.startswith("/admin/") or path == "/metrics":
                if not self._authorized(req):
                    raise Unauthorized("the admin API needs auth.admin_key, sent as a bearer token")
                return None
            if (req.method, path) not in self._routes and not gemini:
                return None  # 404 or 405, from the handler
            if self.metering is None:
                if not self._authorized(req):
                    raise Unauthorized("missing or invalid API key (send it as a bearer token or x-api-key)")
                return None
            cred = _credential(req)
            if self.metering.accountant.identify_cached(cred) is not None:
                return None
        except SwitchmanError as e:
            return self._refuse(d, e, path)
        return self._identify(d, cred, path)

    async def _identify(self, d: Dialect, cred: str, path: str) -> Response | None:
        try:
            await self.metering.accountant.identify(cred)  # type: ignore[union-attr]
        except SwitchmanError as e:
            return self._refuse(d, e, path)
        return None

    def _refuse(self, d: Dialect, e: SwitchmanError, path: str) -> Response:
        """A request refused on its head (key, Host, content type): answered, and counted when it
        was for a model (not the admin API's or a scraper's)."""
        rid = _rid()
        if path in self._chat_paths:
            self.telemetry.refused(None, d.kind, e.status, e.kind, rid)
        return self._error(d, e, rid)

    async def __call__(self, req: Request) -> Response | StreamingResponse:
        h = self._routes.get((req.method, req.path))
        if h is None and self.metering is not None and self.metering.admin.handles(req.path):
            h = self._admin
        if h is None and req.method == "GET" and req.path.startswith(("/v1/models/", "/models/")):
            h = self._model
        if h is None and req.method in ("GET", "DELETE") and req.path.startswith(("/v1/responses/", "/responses/")):
            h = self._stored_response
        if h is None and _is_gemini(req.method, req.path):
            h = self._gemini
        if h is None and Dashboard.handles(req.path) and req.body is not None:
            return await self.dashboard(req)
        if h is None or req.body is None:
            d = (self._gemini_d if _is_gemini(req.method, req.path) else
                 self._anthropic_d if req.path.startswith("/v1/messages") else self._openai_d)
            if req.body is None:
                limit = self.gateway.config.server.max_body_bytes
                return self._error(d, BodyTooLarge(f"request body exceeds the limit of {limit} bytes"), _rid())
            if any(p == req.path for _, p in self._routes):
                return self._error(d, MethodNotAllowed(f"method {req.method} not allowed on {req.path}"), _rid())
            return self._error(d, UnknownEndpoint(f"no such endpoint: {req.path}"), _rid())
        return await h(req)

    # -- auth --------------------------------------------------------------------------------------
    def _authorized(self, req: Request) -> bool:
        """The admin key (the only key there is when no metering runs)."""
        if self._key is None:
            return True
        return hmac.compare_digest(_credential(req).encode(), self._key)

    async def _admin(self, req: Request) -> Response:
        """Keys, spend and budgets (``/admin/keys``, ``/admin/spend``, ``/admin/budgets``)."""
        if self._key is None or not self._authorized(req):
            return self._error(self._openai_d, Unauthorized("the admin API needs auth.admin_key, sent as a bearer token"), _rid())
        status, data = await self.metering.admin(req.method, req.path, req.query, req.body)  # type: ignore[union-attr]
        return Response(status, orjson.dumps(data), {"content-type": _JSON})

    # -- chat --------------------------------------------------------------------------------------
    async def _openai(self, req: Request):
        return await self._chat(req, self._openai_d)

    async def _anthropic(self, req: Request):
        return await self._chat(req, self._anthropic_d)

    async def _completions(self, req: Request):
        return await self._chat(req, self._completions_d)

    async def _embeddings(self, req: Request):
        return await self._chat(req, self._embeddings_d)

    async def _responses(self, req: Request):
        return await self._chat(req, self._responses_d, stateful=True)

    async def _gemini(self, req: Request):
        """``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent`` (``alt=sse``:
        server-sent events, else one JSON array): the model and streaming are the URL's."""
        try:
            model, method = gemini_path(req.path)
        except SwitchmanError as e:
            return self._error(self._gemini_d, e, _rid())
        stream = method == "streamGenerateContent"
        sse = ("alt", "sse") in parse_qsl(req.query)
        return await self._chat(req, self._gemini_d, decode=lambda body: gemini_decode(body, model, stream),
                                encoder=lambda creq: self._gemini_d.stream_encoder(creq, sse))

    async def _chat(self, req: Request, d: Dialect, stateful: bool = False, decode=None,
                    encoder=None) -> Response | StreamingResponse:
        rid = _rid()
        meter = self.metering
        ticket = turn = None
        try:
            if meter is None and not self._authorized(req):
                raise Unauthorized("missing or invalid API key (send it as a bearer token or x-api-key)")
            try:
                body = orjson.loads(req.body)
            except orjson.JSONDecodeError as e:
                raise InvalidRequest(f"body is not valid JSON: {e}") from None
            if stateful:  # the Responses API: previous_response_id and store, kept by the gateway
                creq, turn = await open_turn(self.responses, body, await self._scope(req))
            elif d is self._anthropic_d and type(body) is dict and "thread" in body:  # kept by the gateway
                creq, turn = await open_thread(self.responses, body, await self._scope(req), self._holds)
            else:
                creq = decode(body) if decode is not None else d.decode(body)
            # breakpoints anywhere (Anthropic's, or OpenAI's explicit ones): writes may be billed
            creq.cache_marked = b'"cache_control"' in req.body or b'"prompt_cache_breakpoint"' in req.body
            vendor = {h: req.headers[h] for h in _PASSTHROUGH if h in req.headers}
            if vendor:
                creq.passthrough_headers = vendor
            tags, user = req.headers.get("x-switchman-tags"), req.headers.get("x-switchman-user")
            if tags:
                try:
                    creq.tags = parse_tags(tags)
                except ValueError as e:
                    raise InvalidRequest(f"x-switchman-tags: {e}", param="x-switchman-tags") from None
            if user:
                if len(user) > 256:
                    raise InvalidRequest("x-switchman-user: at most 256 characters", param="x-switchman-user")
                creq.end_user = user
            episode = req.headers.get("x-switchman-episode")
            if episode:
                if len(episode) > 256:
                    raise InvalidRequest("x-switchman-episode: at most 256 characters", param="x-switchman-episode")
                creq.episode = episode
            creq.traceparent = req.headers.get("traceparent")
            deadline = _client_deadline(req)
            control = _cache_control(req)
            if meter is not None:
                ticket = await meter.admit(rid, creq, _credential(req), creq.tags or {}, user, _max_cost(req))
                ticket.control = control
                reply = await ticket.run(deadline)  # settles the ticket, now or when the stream ends
            else:
                reply = await self.gateway.run(creq, deadline=deadline, request_id=rid)
        except SwitchmanError as e:
            if ticket is not None:
                ticket.failed(e)
            else:
                self.telemetry.refused(_asked(req), d.kind, e.status, e.kind, rid)
            return self._error(d, e, rid)
        except (RecursionError, orjson.JSONEncodeError) as exc:  # a value nested past what can be forwarded
            e = InvalidRequest(f"the request nests values too deeply to forward: {str(exc)[:80]}")
            if ticket is not None:
                ticket.failed(e)
            return self._error(d, e, rid)
        except Exception:
            log.exception("request %s failed", rid)
            if ticket is not None:
                ticket.failed(SwitchmanError("internal error"))
            return self._error(d, SwitchmanError("internal error"), rid)
        headers = _headers(rid, reply)
        if ticket is not None and ticket.warning:
            headers["x-switchman-budget-warning"] = ticket.warning
        if reply.response is not None:
            cost = reply.cost()
            if cost is not None:
                headers["x-switchman-cost-usd"] = f"{cost:f}"
            headers["content-type"] = _JSON
            if type(turn) is ThreadTurn:
                b = d.encode(reply.response, creq)
                await self._keep(turn, orjson.loads(b), rid)
                return Response(200, b, headers)
            if turn is not None:
                obj = d.encode_object(reply.response, creq, turn.rid)  # type: ignore[attr-defined]
                await self._keep(turn, obj, rid)
                return Response(200, orjson.dumps(obj), headers)
            return Response(200, d.encode(reply.response, creq), headers)
        if encoder is not None:
            enc = encoder(creq)
        elif type(turn) is ThreadTurn:
            enc = ThreadStream(d.stream_encoder(creq))  # type: ignore[arg-type]
        else:
            enc = d.stream_encoder(creq, turn.rid) if turn is not None else d.stream_encoder(creq)  # type: ignore[call-arg]
        headers["content-type"] = _SSE if getattr(enc, "sse", True) else _JSON
        headers["cache-control"] = "no-cache"
        keep = None
        if turn is not None:
            async def keep(obj: dict, turn=turn, enc=enc) -> None:
                if getattr(enc, "native", False):  # streamed by Anthropic itself, which holds the thread
                    self.gateway.threads.answered(obj["id"], reply.outcome.model.name)
                await self._keep(turn, obj, rid)
        return StreamingResponse(200, _stream(enc, reply, rid, keep), headers)

    async def _keep(self, turn, obj: dict, rid: str) -> None:
        """Store an answered turn; a database failure costs the client the continuation (logged),
        never the answer it paid for."""
        try:
            await turn.save(self.responses, obj)
        except Exception:
            log.exception("request %s: the response %s could not be stored", rid, turn.rid)

    def _holds(self, message_id: str) -> bool:
        """Whether an Anthropic model of this gateway holds the thread of ``message_id`` itself."""
        return self.gateway.threads.holder(message_id) in self.gateway.config.models

    async def _scope(self, req: Request) -> str:
        """Whose stored responses a caller sees: its virtual key's, else the admin key's or, where no
        key is required, every anonymous caller's (ids are 192 random bits)."""
        if self.metering is None:
            return "admin"
        key, admin = await self.metering.accountant.identify(_credential(req))
        return key.id if key is not None else ("admin" if admin else "anonymous")

    async def _stored_response(self, req: Request) -> Response:
        """``GET`` / ``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``."""
        from urllib.parse import unquote

        rid_ = _rid()
        try:
            if self.metering is None and not self._authorized(req):
                raise Unauthorized("missing or invalid API key (send it as a bearer token or x-api-key)")
            rest = unquote(req.path.split("/responses/", 1)[1])
            name, _, sub = rest.partition("/")
            if sub not in ("", "input_items") or (sub and req.method != "GET"):
                raise UnknownEndpoint(f"no such endpoint: {req.path[:200]}")
            scope = await self._scope(req)
            if req.method == "DELETE":
                if not await self.responses.delete(scope, name):
                    raise not_found(name)
                return Response(200, orjson.dumps({"id": name, "object": "response", "deleted": True}),
                                {"content-type": _JSON})
            got = await self.responses.get(scope, name)
            if got is None:
                raise not_found(name)
            if not sub:
                return Response(200, orjson.dumps(got.response), {"content-type": _JSON})
            data = [{"id": f"{name}-in-{i}", **it} if type(it) is dict and "id" not in it else it
                    for i, it in enumerate(got.input)]
            return Response(200, orjson.dumps({"object": "list", "data": data, "has_more": False,
                                               "first_id": data[0]["id"] if data else None,
                                               "last_id": data[-1]["id"] if data else None}),
                            {"content-type": _JSON})
        except SwitchmanError as e:
            return self._error(self._responses_d, e, rid_)

    def _error(self, d: Dialect, e: SwitchmanError, rid: str) -> Response:
        headers = {"content-type": _JSON, "x-switchman-request-id": rid}
        ra = getattr(e, "retry_after", None)
        if isinstance(ra, (int, float)) and ra > 0:  # never a 500 over a strange value
            headers["retry-after"] = str(max(1, round(min(ra, self._max_retry_after))))
        return Response(e.status, d.encode_error(e), headers)

    # -- the rest ----------------------------------------------------------------------------------
    async def _listed(self, req: Request) -> list[dict]:
        """The models and routes this caller may use, in OpenAI's model shape."""
        key = None
        if self.metering is not None:
            key = (await self.metering.accountant.identify(_credential(req)))[0]  # virtual keys too
        elif not self._authorized(req):
            raise Unauthorized("missing or invalid API key")
        cfg = self.gateway.config
        now = int(time.time())
        allowed = key.routes if key is not None and key.routes is not None else None  # only what the key may use
        data = [{"id": m.name, "object": "model", "created": now, "owned_by": m.provider.name}
                for m in cfg.models.values() if allowed is None or m.name in allowed]
        data += [{"id": r.name, "object": "model", "created": now, "owned_by": "switchman"}
                 for r in cfg.routes.values() if allowed is None or r.name in allowed]
        return data

    async def _models(self, req: Request) -> Response:
        try:
            data = await self._listed(req)
        except SwitchmanError as e:
            return self._error(self._openai_d, e, _rid())
        return Response(200, orjson.dumps({"object": "list", "data": data}), {"content-type": _JSON})

    async def _model(self, req: Request) -> Response:
        """``GET /v1/models/{id}`` (``client.models.retrieve``): one model or route, or 404 (also
        for one the key may not use: it learns nothing of names it cannot call)."""
        from urllib.parse import unquote

        name = unquote(req.path.split("/models/", 1)[1])
        try:
            got = next((m for m in await self._listed(req) if m["id"] == name), None)
            if got is None:
                raise UnknownModel(f"The model '{name[:100]}' does not exist", param="model")
        except SwitchmanError as e:
            return self._error(self._openai_d, e, _rid())
        return Response(200, orjson.dumps(got), {"content-type": _JSON})

    async def _count_tokens(self, req: Request) -> Response:
        """Anthropic's ``POST /v1/messages/count_tokens``: the prompt's input tokens. For a model
        whose vendor counts (Anthropic, Gemini) its own count, exact; else, or should that call fail,
        the gateway's tokenizer (o200k), marked ``x-switchman-token-count: estimate``."""
        d = self._anthropic_d
        try:
            if self.metering is not None:
                await self.metering.accountant.identify(_credential(req))
            elif not self._authorized(req):
                raise Unauthorized("missing or invalid API key")
            try:
                body = orjson.loads(req.body)
            except orjson.JSONDecodeError as e:
                raise InvalidRequest(f"body is not valid JSON: {e}") from None
            if isinstance(body, dict):
                body = {**body, "max_tokens": body.get("max_tokens", 1)}  # not part of this request's shape
            creq = d.decode(body)
            cfg = self.gateway.config
            if creq.model not in cfg.models and creq.model not in cfg.routes:
                raise UnknownModel(f"model '{creq.model[:100]}' is not configured", param="model")
            model = cfg.models.get(creq.model)
            n = await self.gateway.executor.count(creq, model) if model is not None else None
            how = "exact" if n is not None else "estimate"
            if n is None:
                n = (await tokens.count_later("".join(creq.texts())))[0]
        except SwitchmanError as e:
            return self._error(d, e, _rid())
        # exact: the vendor's own count for that model; estimate: o200k here (a route, whose model is
        # not chosen yet, or a vendor with no count endpoint)
        return Response(200, orjson.dumps({"input_tokens": n}), {"content-type": _JSON, "x-switchman-token-count": how})

    async def _breakers(self, req: Request) -> Response:
        """Outlier-ejection state per model, and rate-limit cool-downs."""
        if not self._authorized(req):
            return self._error(self._openai_d, Unauthorized("missing or invalid admin key"), _rid())
        ex = self.gateway.executor
        body = {"models": ex.outliers.snapshot(),
                "cooling": {m: round(ex.cooldowns.remaining(m), 3) for m in self.gateway.config.models
                            if ex.cooldowns.remaining(m) > 0}}
        return Response(200, orjson.dumps(body), {"content-type": _JSON})

    async def _decisions(self, req: Request) -> Response:
        if not self._authorized(req):
            return self._error(self._openai_d, Unauthorized("missing or invalid admin key"), _rid())
        d = self.gateway.decisions
        body = {"recent": d.snapshot(), "counts": [{"event": e, "model": m, "count": c} for (e, m), c in d.counts.items()]}
        return Response(200, orjson.dumps(body), {"content-type": _JSON})

    async def _feedback(self, req: Request) -> Response:
        """``POST /v1/feedback``: a score for a request (or an episode) this key made."""
        d = self._openai_d
        if self.metering is None:
            return self._error(d, UnknownEndpoint("feedback needs the ledger (a config file's ledger section)"), _rid())
        try:
            key, admin = await self.metering.accountant.identify(_credential(req))
            if self._key is not None and _credential(req) and self._authorized(req):
                admin = True
            try:
                body = orjson.loads(req.body)
            except orjson.JSONDecodeError as e:
                raise InvalidRequest(f"body is not valid JSON: {e}") from None
            try:
                fb = parse_feedback(body)
                status, out = await self.metering.feedback(fb, key.id if key is not None else None, admin)
            except BadQuery as e:
                raise InvalidRequest(str(e)) from None
            except NotFound as e:
                raise UnknownResource(str(e)) from None
        except SwitchmanError as e:
            return self._error(d, e, _rid())
        return Response(status, orjson.dumps(out), {"content-type": _JSON})

    async def _cache(self, req: Request) -> Response:
        """``GET /admin/cache``: entries, bytes, hit rate, savings. ``DELETE /admin/cache[?scope=&route=&model=]``:
        every entry, or those kept for that scope, route or model."""
        if not self._authorized(req):
            return self._error(self._openai_d, Unauthorized("the admin API needs auth.admin_key"), _rid())
        cache = self.metering.cache if self.metering is not None else None
        if cache is None:
            return self._error(self._openai_d, UnknownResource("the response cache is off (cache: {enabled: true})"),
                               _rid())
        if req.method == "GET":
            return Response(200, orjson.dumps(await cache.stats()), {"content-type": _JSON})
        match = {k: v for k, v in parse_qsl(req.query or "") if k in ("scope", "route", "model")}
        unknown = {k for k, _ in parse_qsl(req.query or "")} - {"scope", "route", "model"}
        if unknown:
            return self._error(self._openai_d, InvalidRequest(f"unknown filter(s) {', '.join(sorted(unknown))} "
                                                              "(scope, route, model)"), _rid())
        return Response(200, orjson.dumps({"deleted": await cache.clear(match or None)}), {"content-type": _JSON})

    async def _experiments(self, req: Request) -> Response:
        """``GET /admin/experiments``: each experiment's arms (share, requests, cost, latency,
        errors and feedback, with intervals), ramp step and decision history."""
        if not self._authorized(req):
            return self._error(self._openai_d, Unauthorized("the admin API needs auth.admin_key"), _rid())
        data = [e.report() for e in self.gateway.experiments.values()]
        return Response(200, orjson.dumps({"data": data}), {"content-type": _JSON})

    async def _metrics(self, req: Request) -> Response:
        t = self.telemetry
        if t.metrics is None:
            return self._error(self._openai_d, UnknownEndpoint("metrics are off (metrics: {enabled: false})"), _rid())
        if not self._metrics_public and not self._authorized(req):
            return self._error(self._openai_d, Unauthorized("/metrics needs auth.admin_key, sent as a bearer token "
                                                            "(or metrics: {public: true})"), _rid())
        if self.metering is not None and self.metering.accountant.rules:
            t.metrics.budgets(_used(await self.metering.accountant.budget_status()))
        return Response(200, t.metrics.render(), {"content-type": METRICS_TYPE})

    async def _live(self, req: Request) -> Response:
        return Response(200, b'{"status":"ok"}', {"content-type": _JSON})

    async def _ready(self, req: Request) -> Response:
        """Ready to serve: models configured and, with metering, the ledger's database and the
        shared state reachable. Redis down with ``state: {on_error: open}`` (the default) is
        ``degraded``, still 200: requests are served with limits unenforced, and a 503 here would
        take every replica sharing that Redis out of its load balancer at once."""
        n = len(self.gateway.config.models)
        body: dict = {"status": "ready", "models": n}
        down = [] if n else ["no models configured"]
        if self.metering is not None:
            acc = self.metering.accountant
            got = await acc.ready()
            body.update({k: "ok" if up else "down" for k, up in got.items()})
            if acc.ledger is not None:
                body["ledger_pending"] = acc.ledger.pending
                body["ledger_quarantined"] = acc.ledger.stats.quarantined
            if not got["ledger"]:
                down.append("ledger database unreachable")
            if not got["state"]:
                if acc.fail_closed:
                    down.append("state backend unreachable (on_error: closed)")
                else:
                    body["status"] = "degraded: state backend unreachable, limits not enforced (on_error: open)"
        cache = self.metering.cache if self.metering is not None else None
        if cache is not None:
            body["cache"] = "ok" if await cache.store.ping() else "down"
            if body["cache"] == "down" and body["status"] == "ready":
                body["status"] = "degraded: cache backend unreachable, every request a miss"
        if down:
            body["status"] = "not ready: " + "; ".join(down)
        return Response(503 if down else 200, orjson.dumps(body), {"content-type": _JSON})


_LOOPBACK: dict[str, bool] = {}


def _is_loopback(host: str) -> bool:
    """``host`` (a Host header or URL authority, with or without a port) names this machine."""
    got = _LOOPBACK.get(host)
    if got is None:
        name = host.rpartition("]")[0].lstrip("[") if host.startswith("[") else host.partition(":")[0]
        name = name.lower().rstrip(".")
        try:
            got = name == "localhost" or name.endswith(".localhost") or ipaddress.ip_address(name).is_loopback
        except ValueError:
            got = False
        if len(_LOOPBACK) < 1024:
            _LOOPBACK[host] = got
    return got


def _asked(req: Request) -> str | None:
    """The route or model a refused request named, when it got as far as being read."""
    try:
        m = orjson.loads(req.body).get("model") if req.body else None
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return m[:200] if isinstance(m, str) else None


def _used(budgets: list[dict]) -> list[tuple[str, float]]:
    """(rule name, spent / limit) for the budgets with a figure this period."""
    out = []
    for b in budgets:
        if b.get("spent_usd") is None:
            continue
        name = b["scope"] if b["match"] is None else f"{b['scope']}:{b['match']}"
        out.append((f"{name}/{b['period']}", float(Decimal(b["spent_usd"]) / Decimal(b["limit_usd"]))))
    return out


def _json_only(h: dict[str, str]) -> None:
    """POST bodies are JSON: a form or text body (what a browser may send cross-site without a
    preflight) is 415, and so is a compressed one (not supported)."""
    ct = h.get("content-type")
    if ct is not None:
        mt = ct.partition(";")[0].strip().lower()
        if mt != "application/json" and not (mt.startswith("application/") and mt.endswith("+json")):
            raise UnsupportedMediaType(f"Content-Type {ct[:80]!r} is not supported: send application/json")
    ce = h.get("content-encoding")
    if ce is not None and ce.strip().lower() != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {ce[:40]!r} is not supported: send the body uncompressed")


def _credential(req: Request) -> str:
    """The client's key: OpenAI SDKs and current Anthropic SDKs send a bearer token, older
    Anthropic SDKs ``x-api-key``, Google's ``x-goog-api-key`` or, in the URL, ``?key=``."""
    got = req.headers.get("authorization", "")
    if got[:7].lower() == "bearer ":
        return got[7:].strip()
    h = req.headers
    got = h.get("x-api-key") or h.get("x-goog-api-key")
    if got:
        return got
    if "key=" in req.query:
        return next((v for k, v in parse_qsl(req.query) if k == "key"), "")
    return ""


def _is_gemini(method: str, path: str) -> bool:
    """A Gemini API call: ``POST /v1beta/models/{model}:{method}``."""
    return method == "POST" and path.startswith(("/v1beta/models/", "/v1/models/")) and ":" in path


def _max_cost(req: Request) -> Decimal | None:
    v = req.headers.get("x-switchman-max-cost-usd")
    if v is None:
        return None
    try:
        d = Decimal(v)
    except InvalidOperation:
        d = Decimal(-1)
    if not d.is_finite() or d <= 0:
        raise InvalidRequest(f"x-switchman-max-cost-usd must be a positive amount of USD, not {v[:40]!r}",
                             param="x-switchman-max-cost-usd")
    return d


def _client_deadline(req: Request) -> float | None:
    """``x-switchman-timeout``: seconds the client will wait; it can only shorten the deadline."""
    v = req.headers.get("x-switchman-timeout")
    if v is None:
        return None
    try:
        t = float(v)
    except ValueError:
        raise InvalidRequest(f"x-switchman-timeout must be seconds, not {v[:40]!r}", param="x-switchman-timeout") from None
    if not t > 0:
        raise InvalidRequest("x-switchman-timeout must be greater than 0", param="x-switchman-timeout")
    return t


def _headers(rid: str, reply: Reply) -> dict[str, str]:
    return {
        "x-switchman-request-id": rid,
        "x-switchman-model": reply.outcome.model.name,
        "x-switchman-route": reply.route,
        "x-switchman-attempts": str(len(reply.outcome.attempts)),
        "x-switchman-reason": reply.reason,
        **({"x-switchman-degraded": "true"} if reply.outcome.degraded else {}),
        **({"x-switchman-cache": reply.cache} if reply.cache else {}),
    }


_CACHE_CONTROLS = ("no-store", "no-cache", "only-if-cached")


def _cache_control(req: Request) -> str | None:
    """``x-switchman-cache``: no-store (do not keep the answer), no-cache (do not serve a kept
    one), only-if-cached (a kept one or 504): HTTP Cache-Control's meanings."""
    v = req.headers.get("x-switchman-cache")
    if v is None:
        return None
    v = v.strip().lower()
    if v not in _CACHE_CONTROLS:
        raise InvalidRequest(f"x-switchman-cache must be one of {', '.join(_CACHE_CONTROLS)}, not {v[:40]!r}",
                             param="x-switchman-cache")
    return v


def _stream(enc: StreamEncoder, reply: Reply, rid: str, keep=None) -> Opened[bytes]:
    """The reply's events in the client's dialect; closing it, even unread, closes them. A
    Responses API ``turn`` is kept (``keep``) before the client sees its last event, so a
    continuation sent the moment the stream ends finds it."""
    events = reply.events

    async def gen():
        try:
            async for ev in events:  # type: ignore[union-attr]
                b = enc.encode(ev)
                if keep is not None and getattr(enc, "final", None) is not None:
                    await keep(enc.final)
                if b:
                    yield b
            b = enc.close()
            if keep is not None and getattr(enc, "final", None) is not None:
                await keep(enc.final)
            yield b
        except SwitchmanError as e:
            # After the first byte there is no taking it back: a well-formed error event, then the end.
            log.warning("request %s: stream failed after it began: %s", rid, e.message)
            yield enc.error(e)
        except Exception:
            log.exception("request %s: stream failed", rid)
            yield enc.error(SwitchmanError("internal error"))
        finally:
            await events.aclose()  # type: ignore[union-attr]

    return Opened(gen(), events.aclose)  # type: ignore[union-attr]
