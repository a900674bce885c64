"""Dashboard sessions: the admin key, typed once into the login form, becomes an HttpOnly,
SameSite=Strict cookie signed with a key derived from it. The key itself is never in a URL, a
page, or the cookie, and any worker can check a session (no server-side store), so ``--workers N``
needs nothing shared. Changing the admin key ends every session.

CSRF: every form that changes something (log in, log out) carries a token the server can check —
before login a random value also set as a cookie (double submit), after login one derived from the
session — and SameSite=Strict keeps the cookie off cross-site requests in the first place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from urllib.parse import parse_qsl

SESSION = "switchman_session"
PRELOGIN = "switchman_csrf"
TTL = 12 * 3600  # seconds a session lasts


class Sessions:
    def __init__(self, admin_key: str | None, ttl: float = TTL) -> None:
        self.admin_key = admin_key
        self.ttl = ttl
        # the signing key: derived from the admin key, so it is the same in every worker and changes with it
        self._sign = hashlib.sha256(b"switchman-dashboard-session\0" + (admin_key or "").encode()).digest()

    @property
    def open(self) -> bool:
        """No admin key configured (loopback only): the dashboard needs no login, as the admin API."""
        return self.admin_key is None

    def check_key(self, given: str) -> bool:
        """The admin key, compared in constant time; one answer for every way of being wrong."""
        if self.admin_key is None:
            return False
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                                   hashlib.sha256(self.admin_key.encode()).digest())

    def new(self, now: float | None = None) -> str:
        exp = int((time.time() if now is None else now) + self.ttl)
        nonce = base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("=")
        body = f"{exp}.{nonce}"
        return f"{body}.{self._mac(body)}"

    def valid(self, token: str | None, now: float | None = None) -> bool:
        if self.open:
            return True
        if not token or token.count(".") != 2:
            return False
        body, _, mac = token.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return False
        try:
            return int(body.split(".", 1)[0]) > (time.time() if now is None else now)
        except ValueError:
            return False

    def csrf(self, session: str | None) -> str:
        """The token a logged-in page's forms carry."""
        return self._mac("csrf:" + (session or "open"))

    def _mac(self, s: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._sign, s.encode(), hashlib.sha256).digest()).decode().rstrip("=")


def cookies(header: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (header or "").split(";"):
        k, _, v = part.strip().partition("=")
        if k and k not in out:
            out[k] = v
    return out


def form(body: bytes | None, limit: int = 8192) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the login form), small."""
    if not body or len(body) > limit:
        return {}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


def set_cookie(name: str, value: str, max_age: int, path: str = "/dashboard") -> str:
    return f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
