"""uvicorn's httptools protocol, writing a response's head and first body chunk in one syscall.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and the
body when it sends ``http.response.body``: two ``write`` calls, each a system call that on a
loopback or LAN socket does the kernel's delivery work at once. For a one-row inference that
second system call is a tenth of the event loop's time per request. :class:`HttpToolsProtocol`
here hands uvicorn's protocol a transport that holds a response head back until the next
write (normally the body, moments later in the same loop iteration) and sends the two as one
buffer; if nothing follows in that iteration (a streamed response, ``100 Continue``) the head
goes out at the end of it. Bytes always leave in the order they were written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Uvicorn

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


class HttpToolsProtocol(_Uvicorn):
    """uvicorn's protocol on a :class:`CoalescingTransport`; pass it as uvicorn's ``http``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
