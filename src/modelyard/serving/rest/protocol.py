"""The REST server's HTTP/1.1 protocol: uvicorn's, with two savings on the hot path.

1. **One write per response.** uvicorn writes a response's status line and headers when the
   app sends ``http.response.start`` and the body when it sends ``http.response.body``: two
   ``write`` system calls. :class:`CoalescingTransport` holds a response head back until the
   next write (normally the body, moments later in the same loop iteration) and sends the two
   as one buffer; if nothing follows in that iteration (a streamed response, ``100
   Continue``) the head goes out at the end of it. Bytes always leave in the order they were
   written.
2. **No ASGI for inference.** ``POST /v2/models/{m}[/versions/{v}]/infer`` is most of a
   server's traffic, and ASGI's machinery (a scope dict, a request-response cycle with its
   ``asyncio.Event``, ``receive``/``send`` messages, header validation) costs more of the
   event loop than our own work on the request. :class:`HttpToolsProtocol` answers such a
   request with an :class:`InferCycle`: the body is gathered as the parser delivers it; once
   it is whole the cycle is started from the loop's ready queue (so that the requests read in
   one loop iteration reach the model thread together, which measured faster than starting
   each at once) by :meth:`RestApp.submit_infer`, which runs the data plane's task-free path
   (:meth:`DataPlane.submit`) and passes the reply to a callback that writes it. Every other
   request (and an infer request that asks for ``100-continue`` or has a query string or
   escapes in its path) takes uvicorn's ASGI route to the same :class:`RestApp`.

The inference cycle plays by uvicorn's rules for a connection: pipelined requests queue
behind the one being answered and are answered in order, ``Connection: close`` and HTTP/1.0
close after the answer, and a graceful shutdown lets the answer go out first: the connection
stays open (and uvicorn waits for it) until then, and the data plane counts the request as in
flight. A body over the limit is not kept (413 once it has been read); a malformed header or
request id is a 400 that still carries the caller's ``X-Request-ID``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Uvicorn

from modelyard.errors import PayloadTooLarge
from modelyard.serving.rest.app import Reply, RequestHeaders, RestApp, error_reply, header_value
from modelyard.serving.types import request_ids

_HEAD = b"HTTP/1.1 "


class CoalescingTransport:
    """A transport that merges a response head into the write after it (see the module)."""

    __slots__ = ("_held", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif bytes(data[: len(_HEAD)]) == _HEAD:
            self._held = bytes(data)
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._release)
        else:
            self._transport.write(data)

    def write_now(self, data: bytes) -> None:
        """Write ``data`` at once, after anything held (a whole response, say)."""
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def _release(self) -> None:
        self._scheduled = False
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._release()
        self._transport.close()

    def write_eof(self) -> None:
        self._release()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:  # everything else is the real transport's
        return getattr(self._transport, name)


_PREFIX = b"/v2/models/"
_SUFFIX = b"/infer"


def infer_target(url: bytes) -> tuple[str, str | None] | None:
    """``(model, version)`` when ``url`` is a plain OIP infer route, else None."""
    if not (url.startswith(_PREFIX) and url.endswith(_SUFFIX)) or b"?" in url or b"%" in url:
        return None
    try:
        middle = url[len(_PREFIX) : -len(_SUFFIX)].decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = middle.split("/")
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions":
        return parts[0], parts[2]
    return None


class InferCycle:
    """One inference request on a connection, answered without ASGI (see the module).

    It offers what uvicorn's protocol reads of a request-response cycle: ``response_complete``,
    ``disconnected``, ``keep_alive``, ``message_event.set()`` and ``run_asgi``, through which
    uvicorn starts a cycle that was queued behind another.
    """

    __slots__ = ("_waiter", "chunks", "disconnected", "headers", "keep_alive", "limit",
                 "model", "more_body", "protocol", "queued", "refused", "response_complete",
                 "size", "started", "version")

    def __init__(self, protocol: HttpToolsProtocol, model: str, version: str | None,
                 headers: list[tuple[bytes, bytes]], keep_alive: bool, limit: int) -> None:
        self.protocol = protocol
        self.model = model
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.refused: int | None = None  # a declared length over the limit: nothing is kept
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self.queued = False
        self.started = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def message_event(self) -> InferCycle:
        return self

    def set(self) -> None:
        """More body, its end, or the client gone: wake a cycle waiting for its body."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, chunk: bytes) -> None:
        if self.refused is not None:
            return
        self.size += len(chunk)
        if self.size <= self.limit:  # past it, nothing more is kept: the answer is 413
            self.chunks.append(chunk)

    async def run_asgi(self, _app: Any) -> None:
        """Start a cycle that was queued behind another, once its body is whole."""
        self.started = True
        while self.more_body and not self.disconnected:
            self._waiter = self.protocol.loop.create_future()
            await self._waiter
        self._waiter = None
        self.begin()

    def begin(self) -> None:
        """Hand the whole request to the app; :meth:`respond` is called with the answer."""
        self.started = True
        if self.disconnected:
            self.response_complete = True
            return
        headers = RequestHeaders(self.headers)
        request_id = headers.request_id or request_ids.next()
        size = self.size if self.refused is None else self.refused
        if size > self.limit:
            self.respond(*error_reply(PayloadTooLarge(
                f"the request body of {size} bytes is over the limit of {self.limit}"),
                request_id))
            return
        chunks, self.chunks = self.chunks, []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.protocol.rest.submit_infer(  # type: ignore[union-attr]
            self.model, self.version, body, headers, request_id, self.reply)

    def reply(self, answer: Reply) -> None:
        self.respond(*answer)

    def respond(self, status: int, body: bytes, request_id: str,
                extra: list[tuple[bytes, bytes]], content_type: bytes) -> None:
        protocol = self.protocol
        self.response_complete = True
        if self.disconnected:
            return
        head = [STATUS_LINE[status], b"content-type: ", content_type, b"\r\ncontent-length: ",
                b"%d" % len(body), b"\r\nx-request-id: ", header_value(request_id), b"\r\n"]
        for name, value in extra:
            head += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", body)
        transport = protocol.transport
        transport.write_now(b"".join(head))
        if not self.keep_alive:
            transport.close()
        protocol.on_response_complete()


class HttpToolsProtocol(_Uvicorn):
    """uvicorn's protocol on a :class:`CoalescingTransport`, answering inference requests
    without ASGI when the app is a :class:`RestApp`; pass it as uvicorn's ``http``.

    Two of uvicorn's per-request costs are made lazy, for every request: the ASGI scope is
    built only for a request that takes the ASGI route (not at the start of each message), and
    the keep-alive timeout is one timer per idle stretch that re-arms itself for what is left
    when the connection was busy meanwhile, instead of a timer armed after every response and
    cancelled by the next request's first bytes.
    """

    transport: CoalescingTransport  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn wraps the app in middleware only at trace logging: then every request
        # takes the ASGI route.
        self.rest: RestApp | None = self.app if isinstance(self.app, RestApp) else None
        self._targets: dict[bytes, tuple[str, str | None] | None] = {}
        self._idle_since: float | None = None  # when the last answer left; None: busy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self._idle_since = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def _scope(self) -> None:
        """The ASGI scope uvicorn builds at the start of every message, for this one."""
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        idle = self._idle_since
        if idle is None or self.transport.is_closing():  # busy: its answer arms the next
            return
        left = idle + self.timeout_keep_alive - self.loop.time()
        if left <= 0:
            self.transport.close()
        else:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_due)

    def on_headers_complete(self) -> None:
        rest = self.rest
        if rest is None or self.expect_100_continue or self.parser.get_method() != b"POST":
            self._scope()
            return super().on_headers_complete()
        url = self.url
        targets = self._targets
        if url in targets:
            target = targets[url]
        else:
            target = infer_target(url)
            if len(targets) >= 256:  # bounded: a client may send any number of paths
                targets.clear()
            targets[url] = target
        if target is None or self.parser.should_upgrade():
            self._scope()
            return super().on_headers_complete()
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        cycle = InferCycle(self, target[0], target[1], self.headers, keep_alive, rest.max_body)
        for name, value in self.headers:
            if name == b"content-length":
                if value.isdigit() and int(value) > rest.max_body:
                    cycle.refused = int(value)
                break
        existing = self.cycle
        self.cycle = cycle  # type: ignore[assignment]
        if existing is not None and not existing.response_complete:
            cycle.queued = True  # uvicorn starts it when the one before has its answer
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if isinstance(cycle, InferCycle):
            if not cycle.response_complete:
                cycle.feed(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if isinstance(cycle, InferCycle):
            cycle.more_body = False
            if cycle.started:
                cycle.set()
            elif not cycle.queued:
                self.loop.call_soon(cycle.begin)
            return
        super().on_message_complete()
