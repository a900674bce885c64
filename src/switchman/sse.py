"""Server-sent events: an incremental decoder that survives arbitrary chunk boundaries."""

from __future__ import annotations


class SSEDecoder:
    """Feed bytes as they arrive; get back complete ``(event, data)`` pairs.

    Handles ``\\n``, ``\\r\\n`` and ``\\r`` line ends, multi-line ``data:``, comments and fields
    we do not use (``id:``, ``retry:``), per the WHATWG event-stream grammar.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        buf = self._buf + chunk if self._buf else chunk
        held = b""
        if b"\r" in buf:
            if buf.endswith(b"\r"):  # maybe half of a CRLF split across reads: keep it for later
                buf, held = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out: list[tuple[str | None, bytes]] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            start = end + 2
            event = None
            data: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    v = line[5:]
                    data.append(v[1:] if v[:1] == b" " else v)
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode()
            if data or event:
                out.append((event, b"\n".join(data)))
        self._buf = buf[start:] + held
        return out


def frame(data: bytes, event: str | None = None) -> bytes:
    """One event's wire form."""
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"
