"""A bounded response cache: same version, same inputs, same requested outputs → same answer."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from modelyard.serving.types import Tensor


class ResponseCache:
    """Least-recently-used, at most ``entries`` answers."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._store: OrderedDict[bytes, list[Tensor]] = OrderedDict()

    @staticmethod
    def key(version_key: str, inputs: list[Tensor], outputs: list[str]) -> bytes:
        digest = hashlib.blake2b(digest_size=20)
        digest.update(version_key.encode())
        for name in outputs:
            digest.update(b"\x00o" + name.encode())
        for tensor in sorted(inputs, key=lambda t: t.name):
            digest.update(b"\x00i" + tensor.name.encode() + b"\x00" + tensor.datatype.encode())
            digest.update(repr(tensor.shape).encode())
            if tensor.datatype == "BYTES":
                for value in tensor.data.ravel():
                    digest.update(len(value).to_bytes(4, "little") + value)
            else:
                digest.update(tensor.data.tobytes())
        return digest.digest()

    def get(self, key: bytes) -> list[Tensor] | None:
        found = self._store.get(key)
        if found is not None:
            self._store.move_to_end(key)
        return found

    def put(self, key: bytes, outputs: list[Tensor]) -> None:
        self._store[key] = outputs
        self._store.move_to_end(key)
        while len(self._store) > self.entries:
            self._store.popitem(last=False)

    def __len__(self) -> int:
        return len(self._store)
