"""The REST protocol writes a response's head and body in one system call, and loses nothing."""

from __future__ import annotations

import asyncio
import json
import socket

from modelyard.serving.rest.protocol import CoalescingTransport
from tests.serving.conftest import LiveServer


class Recorder:
    """A transport that records what reaches the socket."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def test_a_head_and_its_body_go_out_as_one_write() -> None:
    async def scenario() -> list[bytes]:
        sink = Recorder()
        transport = CoalescingTransport(sink, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(HEAD)
        transport.write(b"{}")
        transport.write(b"more")  # not a head: straight through, in order
        await asyncio.sleep(0)
        return sink.writes

    assert asyncio.run(scenario()) == [HEAD + b"{}", b"more"]


def test_a_head_alone_leaves_at_the_end_of_the_loop_iteration_and_on_close() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], bool]:
        sink = Recorder()
        transport = CoalescingTransport(sink, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert sink.writes == []
        await asyncio.sleep(0)
        released = list(sink.writes)
        transport.write(HEAD)
        transport.close()  # held bytes first, then the close
        return released, sink.writes, sink.closed

    released, writes, closed = asyncio.run(scenario())
    assert released == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert writes == [released[0], HEAD]
    assert closed
    assert CoalescingTransport(Recorder(), None).get_extra_info("peername") == (  # type: ignore[arg-type]
        "127.0.0.1", 1)


def test_pipelined_requests_on_one_connection_get_their_answers_in_order(
    live_server: LiveServer,
) -> None:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                                   "data": [1.0] * 30}]}).encode()
    one = (b"POST /v2/models/cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nX-Request-ID: r%%d\r\n\r\n%s" % (len(body), body))
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(b"".join(one % i for i in range(5)))  # five requests in one packet
        data = b""
        while data.count(b"HTTP/1.1 ") < 5 or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection early"
            data += chunk
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert [a.split(b" ", 1)[0] for a in answers] == [b"200"] * 5
    ids = [json.loads(a.split(b"\r\n\r\n", 1)[1])["id"] for a in answers]
    assert ids == [f"r{i}" for i in range(5)]
