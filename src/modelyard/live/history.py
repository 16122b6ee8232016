"""Reading the monitor's time series back: ``monitor_results`` per model version and window."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select

from modelyard.errors import InvalidInput
from modelyard.live._clock import Clock, SystemClock
from modelyard.store import Database
from modelyard.store.tables import monitor_results

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """``"24h"``, ``"30m"``, ``"7d"`` before ``now``, or an ISO-8601 instant; None for all.

    >>> now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    >>> parse_since("90m", now).isoformat(), parse_since("2026-11-20T00:00:00Z", now).day
    ('2026-11-24T10:30:00+00:00', 20)
    """
    if text is None or text == "":
        return None
    found = _SPAN.match(text.strip())
    if found:
        return now - timedelta(seconds=float(found.group(1)) * _UNIT_S[found.group(2)])
    try:
        instant = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"since must be a span such as 30m, 24h or 7d, or an ISO-8601 time; not {text!r}"
        ) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


class History:
    """The stored window results, for the admin API and ``modelyard monitor status``."""

    def __init__(self, database: Database, clock: Clock | None = None) -> None:
        self.database = database
        self.clock = clock or SystemClock()

    def results(
        self, model: str, since: str | None = None, version: int | None = None
    ) -> list[dict[str, Any]]:
        start = parse_since(since, self.clock.now())
        table = monitor_results
        where = [table.c.model == model]
        if version is not None:
            where.append(table.c.version == version)
        if start is not None:
            where.append(table.c.window_start >= start.isoformat(timespec="microseconds"))
        query = (select(table.c.result).where(and_(*where))
                 .order_by(table.c.window_start, table.c.version))
        with self.database.read() as conn:
            return [dict(row.result) for row in conn.execute(query)]

    def latest(self) -> list[dict[str, Any]]:
        """The newest result of every model version of the last two days (gauges, status)."""
        table = monitor_results
        recent = (self.clock.now() - timedelta(days=2)).isoformat(timespec="microseconds")
        newest = (select(table.c.model, table.c.version,
                         table.c.window_start.label("start"))
                  .where(table.c.window_start >= recent)
                  .order_by(table.c.window_start.desc()))
        seen: dict[tuple[str, int], dict[str, Any]] = {}
        with self.database.read() as conn:
            starts: dict[tuple[str, int], str] = {}
            for row in conn.execute(newest):
                starts.setdefault((row.model, row.version), row.start)
            for (model, version), start in starts.items():
                result = conn.execute(select(table.c.result).where(and_(
                    table.c.model == model, table.c.version == version,
                    table.c.window_start == start))).scalar_one()
                seen[(model, version)] = dict(result)
        return [seen[key] for key in sorted(seen)]
