"""The gateway's own checks against the hostile-input probe (F3 auth before the body, F8, F10, F14,
F16), over a real socket against ``switchman serve``."""

from __future__ import annotations

import asyncio
import json

from .conftest import ADMIN

CHAT = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).encode()


def status(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1])


def body(resp: bytes) -> dict:
    return json.loads(resp.partition(b"\r\n\r\n")[2])


async def test_no_key_is_refused_on_the_head_before_any_body_is_sent(keyed):
    r, w = await asyncio.open_connection("127.0.0.1", keyed.port)
    w.write("POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            "content-length: 30000000\r\n\r\n".encode())
    async with asyncio.timeout(5):
        got = await r.read()  # not one byte of the 30 MB was sent
    w.close()
    assert status(got) == 401 and "API key" in body(got)["error"]["message"]
    # Anthropic's dialect gets Anthropic's error shape
    got = await keyed.raw(keyed.request("POST", "/v1/messages", b"{", {"content-type": "application/json"}))
    assert status(got) == 401 and body(got)["type"] == "error" and body(got)["error"]["type"] == "authentication_error"


async def test_a_bad_body_without_a_key_is_401_not_400(keyed):
    got = await keyed.raw(keyed.request("POST", "/v1/chat/completions", b"{not json", {"content-type": "application/json"}))
    assert status(got) == 401


async def test_an_unknown_virtual_key_is_looked_up_then_refused_before_the_body(keyed):
    r, w = await asyncio.open_connection("127.0.0.1", keyed.port)
    w.write("POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer sk-sm-nosuchkey\r\n"
            "content-type: application/json\r\ncontent-length: 30000000\r\n\r\n".encode())
    async with asyncio.timeout(5):
        got = await r.read()
    w.close()
    assert status(got) == 401 and "invalid API key" in body(got)["error"]["message"]


async def test_a_new_virtual_key_works_at_once_and_a_revoked_one_is_refused_on_the_head(keyed):
    auth = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    made = await keyed.raw(keyed.request("POST", "/admin/keys", b'{"name": "k1"}', auth))
    assert status(made) == 201
    secret, kid = body(made)["key"], body(made)["id"]
    chat = keyed.request("POST", "/v1/chat/completions", CHAT, {"authorization": f"Bearer {secret}",
                                                                 "content-type": "application/json"})
    assert status(await keyed.raw(chat)) == 200
    assert status(await keyed.raw(keyed.request("DELETE", f"/admin/keys/{kid}", headers=auth))) == 200
    got = await keyed.raw(chat)
    assert status(got) == 401 and "revoked" in body(got)["error"]["message"]


async def test_f10_bodies_that_are_not_json_are_415(keyed):
    h = {"authorization": f"Bearer {ADMIN}"}
    for ct in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        got = await keyed.raw(keyed.request("POST", "/v1/chat/completions", CHAT, {**h, "content-type": ct}))
        assert status(got) == 415 and ct.split(";")[0] in body(got)["error"]["message"]
    got = await keyed.raw(keyed.request("POST", "/v1/chat/completions", CHAT,
                                        {**h, "content-type": "application/json", "content-encoding": "gzip"}))
    assert status(got) == 415 and "gzip" in body(got)["error"]["message"]
    got = await keyed.raw(keyed.request("POST", "/v1/chat/completions", CHAT,
                                        {**h, "content-type": "application/json; charset=utf-8"}))
    assert status(got) == 200


async def test_f10_loopback_mode_refuses_foreign_hosts_and_origins(keyless):
    ok = await keyless.raw(keyless.request("POST", "/v1/chat/completions", CHAT, {"content-type": "application/json"}))
    assert status(ok) == 200
    for host in ("localhost:4000", "[::1]:4000", "127.0.0.2"):
        got = await keyless.raw(keyless.request("GET", "/v1/models", host=host))
        assert status(got) == 200, host
    rebind = await keyless.raw(keyless.request("POST", "/v1/chat/completions", CHAT,
                                               {"content-type": "application/json"}, host="rebind.attacker.example:4201"))
    assert status(rebind) == 403 and "DNS rebinding" in body(rebind)["error"]["message"]
    got = await keyless.raw(keyless.request("GET", "/admin/decisions", host="rebind.attacker.example"))
    assert status(got) == 403
    csrf = await keyless.raw(keyless.request("GET", "/admin/decisions", headers={"origin": "http://evil.example"}))
    assert status(csrf) == 403 and "cross-origin" in body(csrf)["error"]["message"]
    csrf = await keyless.raw(keyless.request("POST", "/v1/chat/completions", CHAT,
                                             {"origin": "http://evil.example", "content-type": "text/plain"}))
    assert status(csrf) == 403
    # health stays open to any Host: load balancers probe by IP
    got = await keyless.raw(keyless.request("GET", "/health/live", host="10.0.0.5:4000"))
    assert status(got) == 200


async def test_f8_a_key_in_a_trailer_is_never_taken(keyed):
    got = await keyed.raw(
        f"POST /admin/keys HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer wrong\r\n"
        f"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        f"e\r\n{{\"name\": \"x1\"}}\r\n0\r\nauthorization: Bearer {ADMIN}\r\n\r\n".encode())
    assert status(got) == 401


async def test_f16_a_duplicated_authorization_is_400(keyed):
    got = await keyed.raw(f"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer wrong\r\n"
                          f"authorization: Bearer {ADMIN}\r\n\r\n".encode())
    assert status(got) == 400 and "duplicate authorization" in body(got)["error"]["message"]


def _nested(n: int) -> dict:
    v: dict = {"type": "string"}
    for _ in range(n):
        v = {"a": v}
    return v


async def test_f14_a_tool_schema_nested_too_deep_is_400_naming_it(keyed):
    h = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    for depth in (100, 260, 1000):
        schema = '{"a":' * depth + '{"type":"string"}' + "}" * depth  # json.dumps itself stops at ~990
        req = ('{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", '
               '"function": {"name": "f", "parameters": %s}}]}' % schema)
        got = await keyed.raw(keyed.request("POST", "/v1/chat/completions", req.encode(), h))
        assert status(got) == 400, got[:300]
        assert "tools[0].function.parameters" in body(got)["error"]["message"]
    req = {"model": "echo", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
           "tools": [{"name": "f", "input_schema": _nested(300)}]}
    got = await keyed.raw(keyed.request("POST", "/v1/messages", json.dumps(req).encode(), h))
    assert status(got) == 400 and "input_schema" in body(got)["error"]["message"]
    req["tools"] = [{"name": "f", "input_schema": _nested(20)}]  # a real schema's depth is fine
    assert status(await keyed.raw(keyed.request("POST", "/v1/messages", json.dumps(req).encode(), h))) == 200


async def test_f14_tags_user_and_key_fields_are_bounded(keyed):
    h = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    many = ",".join(f"t{i}=v" for i in range(20_000))
    got = await keyed.raw(keyed.request("POST", "/v1/chat/completions", CHAT, {**h, "x-switchman-tags": many[:15000]}))
    assert status(got) == 400 and "at most 32 tags" in body(got)["error"]["message"]
    got = await keyed.raw(keyed.request("POST", "/v1/chat/completions", CHAT, {**h, "x-switchman-tags": "team=" + "x" * 5000}))
    assert status(got) == 400 and "x-switchman-tags" in body(got)["error"]["message"]
    got = await keyed.raw(keyed.request("POST", "/v1/chat/completions", CHAT, {**h, "x-switchman-user": "u" * 5000}))
    assert status(got) == 400
    got = await keyed.raw(keyed.request("POST", "/admin/keys", json.dumps({"name": "n" * 1_000_000}).encode(), h),
                          timeout=10)
    assert status(got) == 400 and "name" in body(got)["error"]["message"]
    ok = await keyed.raw(keyed.request("POST", "/v1/chat/completions", CHAT, {**h, "x-switchman-tags": "team=a,feature=b"}))
    assert status(ok) == 200


async def _rss_after(gw, settle: float = 1.0) -> float:
    await asyncio.sleep(settle)
    return gw.rss_mib()


async def test_f3_f11_memory_stays_bounded_and_comes_back_after_hostile_uploads(keyed):
    """The probe's memory findings against the real server, measured as RSS: tiny chunks (with a
    key, so the body is read) and uploads aborted midway."""
    base = await _rss_after(keyed, 0.2)
    peak = base

    async def tiny_chunks() -> None:
        r, w = await asyncio.open_connection("127.0.0.1", keyed.port)
        w.write(f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {ADMIN}\r\n"
                f"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".encode())
        for _ in range(40):  # 40 x 32,768 two-byte chunks: 2.5 MiB of body, 9 MiB on the wire, never finished
            w.write(b"2\r\nab\r\n" * 32768)
            await w.drain()
        w.transport.abort()

    async def aborted_upload() -> None:
        r, w = await asyncio.open_connection("127.0.0.1", keyed.port)
        w.write(f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {ADMIN}\r\n"
                f"content-type: application/json\r\ncontent-length: {30 << 20}\r\n\r\n".encode())
        for _ in range(20):  # 20 MiB of the 30 announced, then a reset
            w.write(b"a" * (1 << 20))
            await w.drain()
        w.transport.abort()

    for attack in (tiny_chunks, aborted_upload):
        for _ in range(3):
            await asyncio.gather(attack(), attack())
            peak = max(peak, keyed.rss_mib())
    after = await _rss_after(keyed)
    # two bodies of 20 MiB in flight at once: what they hold, and the buffer's growth, never more
    # (the probe saw 28 bytes of memory per byte of 2-byte chunks, and dead connections kept)
    assert peak - base < 2 * 20 * 2, (base, peak)
    assert after - base < 30, (base, after)  # and let go when the peers left
    got = await keyed.raw(keyed.request("GET", "/health/live"))
    assert status(got) == 200
