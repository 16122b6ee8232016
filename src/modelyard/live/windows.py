"""Window profiles in the store: each replica upserts its own row per window; readers merge.

Windows are aligned to multiples of their length since the Unix epoch, so every replica cuts
traffic at the same instants and one window's rows from many replicas merge into the profile
of all of its requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, select
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.monitoring.profile import TableProfile
from modelyard.monitoring.sketches import NumericSketch
from modelyard.store import Database
from modelyard.store.tables import window_profiles


def window_start(at: float, length_s: float) -> float:
    """The start (epoch seconds) of the window holding instant ``at``.

    >>> window_start(125.0, 60.0), window_start(120.0, 60.0)
    (120.0, 120.0)
    """
    return math.floor(at / length_s) * length_s


def iso(at: float) -> str:
    """Epoch seconds as the store's timestamp text (ISO-8601 UTC, microseconds)."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class WindowProfile:
    """One window of one model version: its input/output profile and service statistics."""

    model: str
    version: int
    start: float
    end: float
    rows: int = 0
    requests: int = 0
    errors: int = 0
    profile: TableProfile | None = None
    latency: NumericSketch | None = None

    def merge(self, other: WindowProfile) -> WindowProfile:
        """Fold another replica's profile of the same window in (returns self)."""
        self.rows += other.rows
        self.requests += other.requests
        self.errors += other.errors
        if other.profile is not None:
            if self.profile is None:
                self.profile = TableProfile.from_bytes(other.profile.to_bytes())
            else:  # requests asking for other outputs leave those columns missing
                self.profile.merge(other.profile, union=True)
        if other.latency is not None:
            if self.latency is None:
                self.latency = NumericSketch.from_bytes(other.latency.to_bytes())
            else:
                self.latency.merge(other.latency)
        return self


def save(database: Database, replica: str, windows: Iterable[WindowProfile]) -> None:
    """Upsert this replica's rows for ``windows`` in one transaction."""
    rows = [
        {
            "model": w.model, "version": w.version, "replica": replica,
            "window_start": iso(w.start), "window_end": iso(w.end), "rows": w.rows,
            "requests": w.requests, "errors": w.errors,
            "profile": w.profile.to_bytes() if w.profile is not None else None,
            "latency": w.latency.to_bytes() if w.latency is not None else None,
            "updated_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        }
        for w in windows
    ]
    if not rows:
        return
    with database.write() as conn:
        dialect = conn.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(window_profiles)
        keys = ("model", "version", "replica", "window_start")
        changed = {name: statement.excluded[name] for name in
                   ("window_end", "rows", "requests", "errors", "profile", "latency",
                    "updated_at")}
        conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=changed), rows)


def load(
    database: Database, model: str, version: int | None = None, since: float | None = None,
    until: float | None = None,
) -> list[WindowProfile]:
    """Windows of ``model`` (one version or all) starting in [since, until), replicas merged,
    oldest first."""
    table = window_profiles
    where = [table.c.model == model]
    if version is not None:
        where.append(table.c.version == version)
    if since is not None:
        where.append(table.c.window_start >= iso(since))
    if until is not None:
        where.append(table.c.window_start < iso(until))
    query = select(table).where(and_(*where)).order_by(table.c.window_start, table.c.version)
    merged: dict[tuple[int, str], WindowProfile] = {}
    with database.read() as conn:
        for row in conn.execute(query):
            one = WindowProfile(
                row.model, row.version, epoch(row.window_start), epoch(row.window_end),
                row.rows, row.requests, row.errors,
                TableProfile.from_bytes(row.profile) if row.profile is not None else None,
                NumericSketch.from_bytes(row.latency) if row.latency is not None else None,
            )
            key = (row.version, row.window_start)
            if key in merged:
                merged[key].merge(one)
            else:
                merged[key] = one
    return sorted(merged.values(), key=lambda w: (w.start, w.version))


def models_with_windows(database: Database, since: float) -> list[tuple[str, int]]:
    """The (model, version) pairs with a window starting at or after ``since``."""
    table = window_profiles
    query = (select(table.c.model, table.c.version).distinct()
             .where(table.c.window_start >= iso(since)))
    with database.read() as conn:
        return sorted((row.model, row.version) for row in conn.execute(query))
