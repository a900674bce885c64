"""``Opened``: what a stream holds is released exactly once, whether it is read to the end,
closed part-way, or closed before its first item."""

from __future__ import annotations

from switchman.streams import Opened


def _opened(items, closed: list[str]):
    async def close():
        closed.append("closed")

    async def gen():
        try:
            for x in items:
                yield x
        finally:
            await close()

    return Opened(gen(), close)


async def test_read_to_the_end_closes_once():
    closed: list[str] = []
    s = _opened([1, 2, 3], closed)
    assert [x async for x in s] == [1, 2, 3]
    await s.aclose()
    assert closed == ["closed"]


async def test_closed_part_way_closes_once():
    closed: list[str] = []
    s = _opened([1, 2, 3], closed)
    assert await s.__anext__() == 1
    await s.aclose()
    await s.aclose()
    assert closed == ["closed"]


async def test_closed_unread_closes_once_and_yields_nothing_after():
    closed: list[str] = []
    s = _opened([1, 2, 3], closed)
    await s.aclose()
    await s.aclose()
    assert closed == ["closed"]
    assert [x async for x in s] == []
