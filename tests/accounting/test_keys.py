"""Virtual keys: shown once, stored hashed, listed without secrets, revoked everywhere."""

from __future__ import annotations

import glob
import logging

import pytest

from switchman.accounting import Accountant, AccountingSettings, AdmissionContext
from switchman.accounting.keys import PREFIX, digest
from switchman.accounting.settings import LedgerSettings
from switchman.errors import Unauthorized

from .test_facade import DEAR, Clock, record


def acc_for(url: str, required: bool = True) -> Accountant:
    return Accountant(AccountingSettings(LedgerSettings(url=url, flush_interval=0.01)), required=required,
                      now=Clock().now)


async def test_a_key_looks_right_and_only_its_hash_is_kept(ledger_url, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    acc = acc_for(ledger_url)
    await acc.start()
    secret, rec = await acc.create_key(name="ci", budget="50/month", tags="team=infra")
    assert secret.startswith(PREFIX) and len(secret) == len(PREFIX) + 32
    assert rec.hash == digest(secret) and rec.hint == secret[:10] + "…"
    adm = await acc.admit(AdmissionContext(secret, "auto", [DEAR], 10, 10))
    await acc.settle(adm, *record(adm, "0.01"))
    with pytest.raises(Unauthorized):
        wrong = secret[:-1] + ("x" if secret[-1] != "x" else "y")  # one character off
        await acc.admit(AdmissionContext(wrong, "auto", [DEAR], 10, 10))
    await acc.close()
    dump = await _dump(ledger_url, tmp_path)
    assert rec.hash.encode() in dump  # the dump does reach the keys table ...
    assert secret.encode() not in dump and secret[len(PREFIX):].encode() not in dump  # ... but no secret
    assert secret not in caplog.text and secret[len(PREFIX):] not in caplog.text


async def _dump(url: str, tmp_path) -> bytes:
    if url.startswith("sqlite"):
        path = url[len("sqlite:///"):]
        return b"".join(open(p, "rb").read() for p in glob.glob(path + "*"))
    import asyncpg

    from switchman.accounting.postgres import split_url

    dsn, schema = split_url(url)
    c = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        rows = [str(tuple(r)) for t in ("keys", "requests", "attempts", "request_tags")
                for r in await c.fetch(f"SELECT * FROM {t}")]
    finally:
        await c.close()
    return "\n".join(rows).encode()


async def test_list_and_revoke(ledger_url):
    acc = acc_for(ledger_url)
    await acc.start()
    s1, k1 = await acc.create_key(name="one", rpm=10, routes=["auto"])
    s2, k2 = await acc.create_key(name="two")
    with pytest.raises(ValueError, match="already exists"):
        await acc.create_key(name="one")
    listed = await acc.list_keys()
    assert [k.name for k in listed] == ["one", "two"]
    assert all("hash" not in k.as_dict() for k in listed)
    assert (await acc.revoke_key("one")).id == k1.id  # by name
    assert (await acc.revoke_key(k2.id)).name == "two"  # by id
    assert await acc.revoke_key("nobody") is None
    assert await acc.list_keys() == []
    assert {k.name for k in await acc.list_keys(include_revoked=True)} == {"one", "two"}
    s3, k3 = await acc.create_key(name="one")  # a revoked key's name may be used again
    for s in (s1, s2):
        with pytest.raises(Unauthorized, match="revoked"):
            await acc.admit(AdmissionContext(s, "auto", [DEAR], 10, 10))
    assert (await acc.admit(AdmissionContext(s3, "auto", [DEAR], 10, 10))).key_id == k3.id
    await acc.close()


@pytest.mark.parametrize("fields, words", [
    ({"name": ""}, "name"),
    ({"name": "x", "budget": "50"}, "budget: a budget looks like 50/month"),
    ({"name": "x", "rpm": 0}, "rpm: expected a positive integer"),
    ({"name": "x", "routes": ""}, "routes: name at least one"),
    ({"name": "x", "expires": "2020-01-01"}, "expires: 2020-01-01 is in the past"),
    ({"name": "x", "expires": "soon"}, "expires: expected a date"),
    ({"name": "x", "tags": {"a": 1}}, "tags: expected name=value"),
])
async def test_bad_fields_are_named(sqlite_url, fields, words):
    acc = acc_for(sqlite_url)
    await acc.start()
    with pytest.raises(ValueError, match=words):
        await acc.create_key(**fields)
    await acc.close()


async def test_a_key_made_by_another_process_works_at_once_and_its_revocation_within_a_second(ledger_url):
    server, admin = acc_for(ledger_url), acc_for(ledger_url)
    await server.start()
    await admin.start()
    bad = "sk-sm-" + "x" * 32
    with pytest.raises(Unauthorized):
        await server.admit(AdmissionContext(bad, "auto", [DEAR], 10, 10))
    secret, _ = await admin.create_key(name="fresh")
    await server.admit(AdmissionContext(secret, "auto", [DEAR], 10, 10))  # not cached as unknown: found at once
    await admin.revoke_key("fresh")
    await server.keyring.refresh()  # what the 0.5 s poll does
    with pytest.raises(Unauthorized, match="revoked"):
        await server.admit(AdmissionContext(secret, "auto", [DEAR], 10, 10))
    await server.close()
    await admin.close()
