from switchman.sse import SSEDecoder


def test_events_survive_any_chunking_and_line_ends():
    wire = b"event: a\r\ndata: 1\r\n\r\n: comment\n\ndata: x\ndata: y\n\nevent: b\rdata: 2\r\r\n"
    want = [("a", b"1"), (None, b"x\ny"), ("b", b"2")]
    for size in range(1, len(wire) + 1):
        d = SSEDecoder()
        got = []
        for i in range(0, len(wire), size):
            got += d.feed(wire[i:i + size])
        assert got == want, size
