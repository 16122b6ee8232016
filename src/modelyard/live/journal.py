"""A bounded local spool of JSON-line records for when the database cannot take them.

Records are appended to numbered segment files (``00000000000000000001.jsonl``, …) in one
folder; :meth:`Journal.replay` hands each segment, oldest first, to a consumer and deletes the
segment only once the consumer returned. The folder is bounded by ``max_bytes``: an append
that does not fit keeps the records that do and drops the rest — counted in
``dropped_total`` and logged once per episode of fullness, never silently.

Durability: a plain append reaches the operating system (it survives ``kill -9`` of the
process); ``append(..., fsync=True)`` also waits for the disk (it survives a power cut), for
records a client was told are stored. After a crash the last line of a segment may be torn:
reading skips an incomplete trailing line and keeps the rest, and a reopened journal never
appends to an old segment, so a torn line cannot swallow a later record.

Replay is at least once: a crash between the consumer's commit and the segment's deletion
replays that segment again.

>>> import tempfile
>>> journal = Journal(tempfile.mkdtemp(), max_bytes=1024)
>>> journal.append([{"id": "a"}, {"id": "b"}])
2
>>> batches = []
>>> journal.replay(batches.append)
2
>>> batches, journal.records, journal.bytes
([[{'id': 'a'}, {'id': 'b'}]], 0, 0)
>>> journal.close()
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from modelyard.errors import StorageError

log = logging.getLogger("modelyard.journal")

_SUFFIX = ".jsonl"
_MAX_SEGMENT_BYTES = 1024 * 1024
_MIN_SEGMENT_BYTES = 4096
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def to_json(value: Any) -> bytes:
    """``value`` as compact JSON: numpy arrays and scalars as lists and numbers, NaN → null.

    >>> to_json({"x": np.arange(3)[::2], "y": float("nan")})
    b'{"x":[0,2],"y":null}'
    """
    return orjson.dumps(value, default=_default, option=_DUMPS_OPTIONS)


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # not C-contiguous, or of object dtype
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


class Journal:
    """Append-only JSON-line segments in ``directory``, at most ``max_bytes`` in all.

    Parameters
    ----------
    directory : the journal's own folder (created); one process uses it at a time (a lock file
        guards it), so each server worker needs its own.
    max_bytes : the bound on the segment files' total size; records past it are dropped.
    segment_bytes : a segment is closed once it holds this much (default: a quarter of
        ``max_bytes``, between 4 KiB and 1 MiB); it is also the most a consumer gets at once.

    Attributes
    ----------
    spooled_total, dropped_total, replayed_total, torn_total : records accepted, refused
        (full, or the disk failed), handed back by replay, and skipped as torn or unreadable.
    bytes, records : what the journal holds now.
    """

    def __init__(
        self, directory: str | Path, max_bytes: int, *, segment_bytes: int | None = None
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or min(
            _MAX_SEGMENT_BYTES, max(_MIN_SEGMENT_BYTES, max_bytes // 4)
        )
        self.spooled_total = 0
        self.dropped_total = 0
        self.replayed_total = 0
        self.torn_total = 0
        self.bytes = 0
        self.records = 0
        self._full = False
        self._lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._sizes: dict[int, tuple[int, int]] = {}  # segment → (bytes, records)
        self._current: IO[bytes] | None = None
        self._current_seq = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock(self.directory)
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            if path.stem.isdigit():
                data = path.read_bytes()
                self._sizes[int(path.stem)] = (len(data), data.count(b"\n"))
        self._next_seq = max(self._sizes, default=0) + 1
        self.bytes = sum(size for size, _ in self._sizes.values())
        self.records = sum(count for _, count in self._sizes.values())
        if self.records:
            log.info("journal %s holds %d records from before; they will be replayed",
                     self.directory, self.records)

    def append(self, records: Sequence[Any], *, fsync: bool = False) -> int:
        """Add ``records`` (JSON-ready values) in order; returns how many were taken.

        Records that would push the journal past ``max_bytes`` are dropped, with every one
        after them, so what is kept is always a prefix of ``records``.
        """
        lines = [to_json(record) + b"\n" for record in records]
        with self._lock:
            room = self.max_bytes - self.bytes
            taken = 0
            size = 0
            for line in lines:
                if size + len(line) > room:
                    break
                size += len(line)
                taken += 1
            if taken:
                try:
                    self._write(b"".join(lines[:taken]), taken, fsync)
                except OSError as error:
                    self._seal()  # a partial line stays at the end of a closed segment
                    log.error("journal %s: cannot write (%s); %d records dropped",
                              self.directory, error, len(lines))
                    self.dropped_total += len(lines)
                    return 0
            self.spooled_total += taken
            refused = len(lines) - taken
            if refused:
                self.dropped_total += refused
                if not self._full:
                    log.warning(
                        "journal %s is full (%d of %d bytes): dropping records until it has "
                        "room again (%d dropped so far)",
                        self.directory, self.bytes, self.max_bytes, self.dropped_total,
                    )
                self._full = True
            elif self._full and lines:
                log.warning("journal %s takes records again; %d dropped in all so far",
                            self.directory, self.dropped_total)
                self._full = False
            return taken

    def _write(self, data: bytes, count: int, fsync: bool) -> None:
        if self._current is not None and self._sizes[self._current_seq][0] >= self.segment_bytes:
            self._seal()
        if self._current is None:
            self._current_seq = self._next_seq
            self._next_seq += 1
            self._current = open(self._segment(self._current_seq), "ab")  # noqa: SIM115
            self._sizes[self._current_seq] = (0, 0)
            if fsync:
                _fsync_directory(self.directory)
        self._current.write(data)
        self._current.flush()
        if fsync:
            os.fsync(self._current.fileno())
        size, records = self._sizes[self._current_seq]
        self._sizes[self._current_seq] = (size + len(data), records + count)
        self.bytes += len(data)
        self.records += count

    def _seal(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def _segment(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    def replay(self, consumer: Callable[[list[Any]], object]) -> int:
        """Hand each segment's records to ``consumer``, oldest first; returns records replayed.

        A segment is deleted only after ``consumer`` returned; if it raises, replay stops
        there and the exception propagates, leaving that segment and every newer one in place.
        Records appended while a replay runs go to a new segment, replayed next time.
        """
        with self._replay_lock:
            with self._lock:
                self._seal()
                segments = sorted(self._sizes)
            replayed = 0
            for seq in segments:
                batch = self._read(seq)
                if batch:
                    consumer(batch)
                with self._lock:
                    size, count = self._sizes.pop(seq)
                    self._segment(seq).unlink(missing_ok=True)
                    self.bytes -= size
                    self.records -= count
                    self.replayed_total += len(batch)
                replayed += len(batch)
            return replayed

    def _read(self, seq: int) -> list[Any]:
        path = self._segment(seq)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        if lines[-1]:
            self.torn_total += 1
            log.warning("journal %s: skipped an incomplete last line in %s (%d bytes)",
                        self.directory, path.name, len(lines[-1]))
        records = []
        for line in lines[:-1]:
            if not line:
                continue
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                self.torn_total += 1
                log.warning("journal %s: skipped an unreadable line in %s", self.directory,
                            path.name)
        return records

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the open segment and release the folder; unreplayed records stay on disk."""
        with self._lock:
            self._seal()
            if not self._lock_file.closed:
                self._lock_file.close()


def _lock(directory: Path) -> IO[bytes]:
    handle = open(directory / ".lock", "ab")  # noqa: SIM115
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; one process per folder by convention
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StorageError(
            f"the journal folder {directory} is in use by another process; "
            "give each process its own folder"
        ) from None
    return handle


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder; the file's own fsync must do
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Replayer:
    """A thread that replays a journal into its sink once the sink works again.

    Owners set :attr:`outage` when the sink failed (new records then go straight to the
    journal); the thread tries to replay every ``retry_s`` while the journal holds records,
    doubling the wait after each failure up to ``max_backoff_s``, and clears :attr:`outage`
    after a replay succeeds.
    """

    def __init__(
        self, journal: Journal, consumer: Callable[[list[Any]], object], *, name: str,
        retry_s: float = 1.0, max_backoff_s: float = 30.0,
    ) -> None:
        self.journal = journal
        self.consumer = consumer
        self.name = name
        self.retry_s = retry_s
        self.max_backoff_s = max_backoff_s
        self.outage = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        delay = self.retry_s
        while not self._stop.wait(delay):
            if not self.journal.records:
                self.outage.clear()
                delay = self.retry_s
                continue
            try:
                self.replay_now()
                delay = self.retry_s
            except Exception as error:
                delay = min(delay * 2, self.max_backoff_s)
                log.info("%s: replay failed (%s); next try in %.1f s", self.name,
                         str(error).splitlines()[0] if str(error) else type(error).__name__,
                         delay)

    def replay_now(self) -> int:
        """Replay the journal once, in this thread; raises what the consumer raised."""
        count = self.journal.replay(self.consumer)
        self.outage.clear()
        if count:
            log.info("%s: replayed %d records from the journal", self.name, count)
        return count

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
