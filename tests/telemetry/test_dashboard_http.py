"""The dashboard's doors, over plain HTTP: no session means the login form, the key is checked in
constant time and says nothing of what was wrong, forms need their CSRF token, the cookie is
HttpOnly and SameSite=Strict, pages carry a strict Content-Security-Policy, and static files stay
inside their folder."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from .serving import ADMIN, serve, stop


@pytest.fixture
async def gw(tmp_path):
    s = await serve(tmp_path)
    yield s
    await stop(s)


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # keep cookies for 127.0.0.1


async def login_form(http, base) -> str:
    async with http.get(base + "/dashboard/login") as r:
        assert r.status == 200
        return re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)


async def test_sessions_and_csrf(gw):
    base = gw.base
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        for path in ("/dashboard", "/dashboard/spend", "/dashboard/requests/req_x", "/dashboard/nope"):
            async with http.get(base + path, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["location"] == "/dashboard/login", path
        # a forged session cookie is no session
        http.cookie_jar.update_cookies({"switchman_session": "9999999999.abc.def"})
        async with http.get(base + "/dashboard", allow_redirects=False) as r:
            assert r.status == 303
        token = await login_form(http, base)
        # the form without its token (a cross-site post): refused
        async with aiohttp.ClientSession() as other:
            async with other.post(base + "/dashboard/login", data={"key": ADMIN, "csrf": token},
                                  allow_redirects=False) as r:
                assert r.status == 403
        for wrong in (ADMIN + "x", ADMIN[:-1], "", "x" * 5000):
            token = await login_form(http, base)
            async with http.post(base + "/dashboard/login", data={"key": wrong, "csrf": token},
                                 allow_redirects=False) as r:
                assert r.status == 200 and "invalid admin key" in await r.text()
        token = await login_form(http, base)
        async with http.post(base + "/dashboard/login", data={"key": ADMIN, "csrf": token},
                             allow_redirects=False) as r:
            assert r.status == 303
            cookie = r.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and ADMIN not in cookie
        async with http.get(base + "/dashboard") as r:
            assert r.status == 200
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert r.headers["x-frame-options"] == "DENY"
            page = await r.text()
        assert ADMIN not in page
        # log out needs the page's token
        async with http.post(base + "/dashboard/logout", data={"csrf": "forged"}, allow_redirects=False) as r:
            assert r.status == 403
        csrf = re.search(r'action="/dashboard/logout".*?name="csrf" value="([^"]+)"', page).group(1)
        async with http.post(base + "/dashboard/logout", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303
        async with http.get(base + "/dashboard", allow_redirects=False) as r:
            assert r.status == 303


async def test_static_files_stay_in_their_folder(gw):
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.base + "/dashboard/static/uplot-1.6.32.min.js") as r:
            assert r.status == 200 and r.headers["content-type"].startswith("text/javascript")
        async with http.get(gw.base + "/dashboard/static/uplot-1.6.32.LICENSE") as r:
            assert "MIT" in await r.text()
        from yarl import URL

        for bad in ("../handler.py", "..%2Fhandler.py", "..%2F..%2Fapp.py", ".hidden.js", "nope.js", "handler.py"):
            async with http.get(URL(gw.base + "/dashboard/static/" + bad, encoded=True), allow_redirects=False) as r:
                body = await r.read()
                assert r.status in (303, 404) and b"import" not in body, bad  # the login, or nothing


async def test_a_hostile_value_is_shown_not_run(gw):
    """Tags, users and reasons are the clients' words: escaped on every page."""
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        evil = "<script>alert(1)</script>"
        async with http.post(gw.base + "/v1/chat/completions", headers={**gw.admin(), "x-switchman-user": evil,
                                                                        "x-switchman-tags": "team=<img src=x onerror=alert(1)>"},
                             json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200
            rid = r.headers["x-switchman-request-id"]
        token = await login_form(http, gw.base)
        async with http.post(gw.base + "/dashboard/login", data={"key": ADMIN, "csrf": token}) as r:
            assert r.status == 200
        for _ in range(50):
            async with http.get(gw.base + f"/dashboard/requests/{rid}") as r:
                page = await r.text()
            if r.status == 200:
                break
            await asyncio.sleep(0.05)  # written by the ledger a moment after the answer
        assert r.status == 200
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<img src=x" not in page
