"""The dashboard in a real browser (Debian's chromium driven by Playwright), against
``switchman serve`` with real traffic from the OpenAI SDK: log in, see the numbers, filter the log,
open a request, see feedback. No console errors; a screenshot of every page is kept."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from decimal import Decimal
from pathlib import Path

import aiohttp
import openai
import pytest

from .serving import ADMIN, serve, stop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SWITCHMAN_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")) / "dashboard"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("SWITCHMAN_REQUIRE_BROWSER"),
                                reason="needs Debian's chromium (.ci/run installs it)")


@pytest.fixture
async def gw(tmp_path):
    s = await serve(tmp_path, extra="budgets:\n  - {global: true, limit: 10/month, soft: 80%}")
    yield s
    await stop(s)


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        await b.close()


async def traffic(s) -> list[str]:
    client = openai.AsyncOpenAI(base_url=s.base + "/v1", api_key=ADMIN, max_retries=0)
    ids = []
    for model in ("echo", "echo", "echo", "auto", "auto"):
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "hello dashboard"}],
            extra_headers={"x-switchman-tags": "team=web", "x-switchman-user": "dana"})
        ids.append(raw.headers["x-switchman-request-id"])
    stream = await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "stream it"}],
                                                  stream=True)
    async for _ in stream:
        pass
    await client.close()
    return ids


async def spend_total(s) -> Decimal:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(s.base + "/admin/spend?by=model", headers=s.admin()) as r:
                got = await r.json()
            if got["total"]["requests"] >= 6:
                return Decimal(got["total"]["cost_usd"])
            await asyncio.sleep(0.05)
    raise AssertionError("traffic never reached the ledger")


async def test_dashboard_in_a_browser(gw, browser):
    s = gw
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1300, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    async def shot(name: str) -> None:
        await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    # no session: every page sends you to the login form; a wrong key says nothing more than "invalid"
    await page.goto(s.base + "/dashboard/spend")
    assert page.url.endswith("/dashboard/login")
    await page.fill("input[name=key]", ADMIN + "x")
    await page.click("button[type=submit]")
    assert await page.locator("[role=alert]").inner_text() == "invalid admin key"
    await shot("login")
    await page.fill("input[name=key]", ADMIN)
    await page.click("button[type=submit]")
    assert page.url.endswith("/dashboard")
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "switchman_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and ADMIN not in session["value"]

    ids = await traffic(s)
    total = await spend_total(s)

    await page.goto(s.base + "/dashboard")
    assert await page.locator("[data-tile=requests] .value").inner_text() == "6"
    month = await page.locator("[data-tile=month] .value").inner_text()
    assert Decimal(month.lstrip("$").replace(",", "")) == total.normalize() or month == f"${total:,.2f}"
    await page.wait_for_selector("#traffic canvas")
    assert int(await page.locator("#traffic").get_attribute("data-points")) >= 1
    assert "echo" in await page.locator(".cols table").last.inner_text()  # top models
    await shot("overview")

    await page.goto(s.base + "/dashboard/spend?by=model")
    rows = await page.locator("table.spend tbody tr").all_inner_texts()
    assert any(r.startswith("echo") for r in rows)
    await page.wait_for_selector("#spend canvas")
    await shot("spend")
    await page.goto(s.base + "/dashboard/spend?by=tag")
    assert "team=web" in await page.locator("table.spend").inner_text()

    await page.goto(s.base + "/dashboard/requests")
    assert await page.locator("table.requests tbody tr").count() == 6
    await page.fill("#request-filters input[name=route]", "auto")
    await page.click("#request-filters button")
    assert await page.locator("table.requests tbody tr").count() == 2
    await shot("requests")
    await page.locator("table.requests tbody tr a").first.click()
    assert re.search(r"/dashboard/requests/req_", page.url)
    attempts = await page.locator("table.attempts tbody tr").all_inner_texts()
    assert len(attempts) == 2 and "broken" in attempts[0] and "server_error" in attempts[0] and "fallback" in attempts[1]
    await shot("request")
    await page.goto(s.base + "/dashboard/requests?status=bogus")
    assert "status" in await page.locator("[role=alert]").inner_text()

    async with aiohttp.ClientSession() as http:
        for rid, score in ((ids[0], 1), (ids[1], 0)):
            async with http.post(s.base + "/v1/feedback", json={"request_id": rid, "score": score}, headers=s.admin()) as r:
                assert r.status == 201
    await page.goto(s.base + "/dashboard/feedback")
    row = await page.locator("table.satisfaction tbody tr").first.inner_text()
    assert row.split("\t")[:2] == ["echo", "2"] and row.split("\t")[-1] == "0.50"
    await shot("feedback")

    await page.goto(s.base + "/dashboard/live")
    live = await page.locator("table.live").inner_text()
    assert "echo" in live and "broken" in live
    await shot("live")
    await page.goto(s.base + "/dashboard/budgets")
    budgets = await page.locator("table.budgets").inner_text()
    assert "global" in budgets and "$10.00/month" in budgets
    await shot("budgets")

    await page.click("header .logout button")
    assert page.url.endswith("/dashboard/login")
    await page.goto(s.base + "/dashboard")
    assert page.url.endswith("/dashboard/login")
    assert problems == []
