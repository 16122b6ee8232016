"""The REST protocol writes a response's head and body in one system call, and loses nothing."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

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


PLANS = json.dumps({"inputs": [
    {"name": "age", "shape": [1], "datatype": "FP64", "data": [61.0]},
    {"name": "income", "shape": [1], "datatype": "FP64", "data": [20.0]},
    {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
]}).encode()


Answer = tuple[int, dict[str, str], bytes]


def _exchange(port: int, raw: bytes, answers: int) -> tuple[list[Answer], bool]:
    """Send ``raw`` on one connection; read ``answers`` responses (by Content-Length), and
    whether the server then closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        parsed: list[Answer] = []
        while len(parsed) < answers:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, f"the server closed the connection after {len(parsed)} answers"
                data += chunk
            head, data = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:])
            length = int(headers.get("content-length", "0"))
            while len(data) < length:
                chunk = sock.recv(65536)
                assert chunk, "the server closed the connection mid-answer"
                data += chunk
            parsed.append((int(lines[0].split()[1]), headers, data[:length]))
            data = data[length:]
        sock.settimeout(2)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return parsed, closed


def _post(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return (f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_inference_requests_mixed_with_others_are_answered_in_order(
    live_server: LiveServer,
) -> None:
    """Inference takes the protocol's own path, other routes ASGI's; on one connection the
    answers still come back in the order the requests were sent."""
    raw = (_post("/v2/models/plans/infer", PLANS, "X-Request-ID: first")
           + b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-Request-ID: second\r\n\r\n"
           + _post("/v2/models/plans/versions/1/infer", PLANS, "X-Request-ID: third")
           + _post("/v2/models/plans/infer", b"{not json", "X-Request-ID: fourth"))
    answers, closed = _exchange(live_server.port, raw, 4)
    assert [status for status, _, _ in answers] == [200, 200, 200, 400]
    assert [h["x-request-id"] for _, h, _ in answers] == ["first", "second", "third", "fourth"]
    assert json.loads(answers[0][2])["outputs"] == json.loads(answers[2][2])["outputs"]
    assert "not valid JSON" in json.loads(answers[3][2])["error"]
    assert not closed  # keep-alive


@pytest.mark.parametrize(("raw", "closes"), [
    (_post("/v2/models/plans/infer", PLANS, "Connection: close"), True),
    (_post("/v2/models/plans/infer", PLANS, version="1.0"), True),
    (_post("/v2/models/plans/infer", PLANS, "Expect: 100-continue"), False),  # ASGI's path
    (b"POST /v2/models/plans/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (PLANS[:20], PLANS[20:]))
     + b"0\r\n\r\n", False),
])
def test_close_http10_continue_and_chunked_bodies(
    live_server: LiveServer, raw: bytes, closes: bool
) -> None:
    answers, closed = _exchange(live_server.port, raw, 2 if b"100-continue" in raw else 1)
    status, headers, body = answers[-1]
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["data"]
    assert closed is closes
    if closes:
        assert headers.get("connection") == "close"


def test_a_body_over_the_limit_is_refused_and_the_connection_serves_on(
    live_server: LiveServer,
) -> None:
    big = b"x" * (600 * 1024)  # two chunks of 600 KiB: over the 1 MiB limit, undeclared
    chunked = (b"POST /v2/models/plans/infer HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(big), big) for _ in range(2)) + b"0\r\n\r\n")
    declared = _post("/v2/models/plans/infer", b"y" * (1024 * 1024 + 1))
    answers, closed = _exchange(live_server.port, chunked + declared
                                + _post("/v2/models/plans/infer", PLANS), 3)
    assert [status for status, _, _ in answers] == [413, 413, 200]
    assert "over the limit" in json.loads(answers[0][2])["error"]
    assert f"{1024 * 1024 + 1} bytes" in json.loads(answers[1][2])["error"]
    assert not closed


@pytest.mark.parametrize(("path", "body", "header", "message"), [
    ("/v2/models/plans/infer", PLANS, "Inference-Header-Content-Length: soon",
     "Inference-Header-Content-Length is not a whole number"),
    ("/v1/models/plans:predict", b'{"instances": []}', "X-Modelyard-Timeout-Ms: later",
     "X-Modelyard-Timeout-Ms is not a whole number"),
    ("/v2/models/plans/infer",
     json.dumps({**json.loads(PLANS), "id": "a\r\nSet-Cookie: x=1"}).encode(), "",
     "control character"),
])
def test_malformed_headers_and_ids_get_400_with_the_callers_id(
    live_server: LiveServer, path: str, body: bytes, header: str, message: str
) -> None:
    headers = [h for h in (header, "X-Request-ID: mine") if h]
    answers, _ = _exchange(live_server.port, _post(path, body, *headers), 1)
    status, got, text = answers[0]
    assert status == 400, text
    assert message in json.loads(text)["error"]
    assert got["x-request-id"] == "mine"
    assert "set-cookie" not in got


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout_and_a_busy_one_is_not(
    make_dataplane: object,
) -> None:
    """The keep-alive timer is one per idle stretch: a connection that asks again before it
    runs out is kept (the timer re-arms for what is left), one left idle is closed."""
    import threading
    import time

    import uvicorn

    from modelyard.serving.rest import RestApp
    from modelyard.serving.rest.protocol import HttpToolsProtocol

    dataplane = make_dataplane()  # type: ignore[operator]
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    port.listen(16)
    server = uvicorn.Server(uvicorn.Config(
        RestApp(dataplane), http=HttpToolsProtocol, lifespan="off", log_level="warning",
        timeout_keep_alive=1))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[port])),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                                   "data": [1.0] * 30}]}).encode()
    try:
        with socket.create_connection(port.getsockname(), timeout=10) as sock:
            opened = time.monotonic()
            for _ in range(3):  # asked again every 0.6 s: past the first timer, kept open
                sock.sendall(_post("/v2/models/cancer/infer", body))
                answer = sock.recv(65536)
                assert answer.startswith(b"HTTP/1.1 200 "), answer
                time.sleep(0.6)
            kept = time.monotonic() - opened
            sock.settimeout(5)
            assert sock.recv(1) == b""  # then idle: closed
            closed_after = time.monotonic() - opened - kept
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert kept > 1.5
    assert 0.3 < closed_after < 2.0
