"""What one connection may cost the server: sizes, deadlines and counts, each with the reason it
exists (the finding of the hostile-input probe it closes, ``../shared/research/HOSTILE_INPUT_PROBE.md``).

Defaults follow nginx and uvicorn/h11 where they agree: an 8–16 KiB request line and header line,
64 KiB for the whole head, 100 headers, 30 s to send a head and 60 s for a body (nginx's
``client_header_timeout``/``client_body_timeout``), 60 s without progress while sending (nginx's
``send_timeout``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 32 << 20  # bytes of one request body (413 past it, as soon as it is known)
    max_url: int = 16 << 10  # bytes of the request target (414)
    max_header: int = 16 << 10  # bytes of one header line (431)
    max_head: int = 64 << 10  # bytes of the whole request head (431)
    max_headers: int = 100  # header lines (431)
    head_timeout: float = 30.0  # seconds from a head's first byte to its end (408), however it trickles
    body_timeout: float = 60.0  # seconds from the end of the head to the end of the body (408)
    idle_timeout: float = 75.0  # seconds a kept-alive connection may wait for its next request
    send_timeout: float = 60.0  # seconds a client may accept no bytes of a response before it is cut
    max_connections: int = 4096  # open connections per worker; past it, 503 and close
    reserved_for_health: int = 64  # past max_connections, this many more may ask /health/* only (within 1 s)
    high_water: int = 256 << 10  # bytes queued for the client before reading from it stops
