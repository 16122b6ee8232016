"""Delivering alert notifications: a webhook, Alertmanager's v2 API, the log; and the outbox.

The evaluator (``live.alerts``) writes each notification into the ``alert_notifications``
outbox in the same transaction as the state change, one row per notifier. :class:`Outbox`
sends the rows that are due, oldest first and in order per alert and notifier (a resolve never
overtakes its firing), marks them delivered, or retries them with exponential backoff (1 s,
2 s, 4 s … at most 5 min) until ``max_attempts``, then gives up — logged, and kept with the
last error. A crash between sending and marking sends that row again after its lease: delivery
is at least once, and a repeat can only follow a crash.

Alertmanager forgets an alert that is not re-sent before its ``endsAt`` (without one, after its
``resolve_timeout``, 5 min by default). So a firing alert is sent to it with ``endsAt`` four
reminder intervals ahead, and :meth:`Outbox.resend_firing` reminds it of every alert still
firing each ``resend_s`` (60 s) through :meth:`AlertmanagerNotifier.refresh` — as Prometheus
does. Webhook and log get no reminders: one message per firing, one per resolve. If modelyard
stops, Alertmanager resolves its alerts by itself within four intervals.

Deliveries block on the network (``urllib``, with a timeout): run the outbox on a thread
(:meth:`Outbox.start`), never on an event loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import and_, delete, or_, select, text, update

from modelyard.errors import InvalidInput, Unavailable, first_line
from modelyard.live._clock import Clock, SystemClock
from modelyard.live.alert_rules import RuleStore, stamp
from modelyard.live.alerts import AlertEvaluator
from modelyard.settings import MonitoringSettings, NotifierSettings
from modelyard.store import Database
from modelyard.store.tables import alert_notifications

log = logging.getLogger("modelyard.alerts")

Payload = dict[str, Any]
_OUTBOX_LOCK_KEY = 0x616C65727473  # pg_advisory_xact_lock key: one claimer at a time
_PURGE_EVERY_S = 3600.0  # how often the outbox forgets notifications past their retention
_BACKOFF_BASE_S = 1.0
_BACKOFF_CAP_S = 300.0


class Notifier(Protocol):
    """Where notifications go. ``send`` delivers a batch or raises; it may block."""

    @property
    def name(self) -> str: ...

    def send(self, payloads: list[Payload]) -> None: ...


@runtime_checkable
class Reminded(Protocol):
    """A notifier that forgets an alert unless reminded: firing alerts are re-sent to it
    every ``resend_s`` seconds through ``refresh``."""

    @property
    def resend_s(self) -> float: ...

    def refresh(self, firing: list[Payload]) -> None: ...


def backoff_s(attempts: int) -> float:
    """The pause after the ``attempts``-th failed delivery.

    >>> [backoff_s(n) for n in (1, 2, 3, 10, 20)]
    [1.0, 2.0, 4.0, 300.0, 300.0]
    """
    return min(_BACKOFF_BASE_S * 2.0 ** min(attempts - 1, 30), _BACKOFF_CAP_S)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirected POST would lose its body: report it as a failure


_opener = urllib.request.build_opener(_NoRedirect)


def _origin(url: str) -> str:
    """``scheme://host:port`` — webhook paths and queries often carry secrets."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def _check_url(url: str, what: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{what} must be an http:// or https:// URL, not {url!r}")
    return url


def post_json(url: str, body: Any, timeout_s: float) -> None:
    """POST ``body`` as JSON; raises Unavailable with one line unless answered 2xx."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "modelyard"},
    )
    try:
        with _opener.open(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as error:
        detail = first_line(error.read(300).decode("utf-8", "replace")) if error.fp else ""
        raise Unavailable(f"{_origin(url)} answered HTTP {error.code}"
                          + (f": {detail}" if detail else "")) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise Unavailable(f"cannot reach {_origin(url)}: {first_line(str(reason))}") from None


class WebhookNotifier:
    """POSTs ``{"version": "1", "source": "modelyard", "alerts": [notification, …]}``; each
    notification has status, rule, subject, labels, annotations, startsAt, endsAt, value,
    severity, metric, op and threshold (``live.alerts.notification``)."""

    def __init__(self, url: str, timeout_s: float = 5.0, name: str | None = None) -> None:
        self.url = _check_url(url, "webhook URL")
        self.timeout_s = timeout_s
        digest = hashlib.blake2b(url.encode(), digest_size=4).hexdigest()
        self.name = name or f"webhook:{digest}"  # stable across restarts and reorderings

    def send(self, payloads: list[Payload]) -> None:
        post_json(self.url, {"version": "1", "source": "modelyard", "alerts": payloads},
                  self.timeout_s)


class AlertmanagerNotifier:
    """Alertmanager's v2 API: ``POST {base}/api/v2/alerts`` with a list of alerts."""

    name = "alertmanager"

    def __init__(self, base_url: str, timeout_s: float = 5.0, *, resend_s: float = 60.0,
                 generator_url: str | None = None, clock: Clock | None = None) -> None:
        self.url = _check_url(base_url, "Alertmanager URL").rstrip("/") + "/api/v2/alerts"
        self.timeout_s = timeout_s
        self.resend_s = resend_s
        self.generator_url = generator_url
        self.clock = clock or SystemClock()

    def alert(self, payload: Payload, now: datetime) -> Payload:
        """One notification as a postable Alertmanager alert."""
        annotations = {str(k): str(v) for k, v in payload.get("annotations", {}).items() if v}
        if payload.get("value") is not None:
            annotations["value"] = f"{payload['value']:.6g}"
        ends = payload.get("endsAt") if payload["status"] == "resolved" else None
        alert: Payload = {
            "labels": {str(k): str(v) for k, v in payload["labels"].items()},
            "annotations": annotations,
            "endsAt": ends or stamp(now + timedelta(seconds=4 * self.resend_s)),
        }
        if payload.get("startsAt"):
            alert["startsAt"] = payload["startsAt"]
        if self.generator_url:
            alert["generatorURL"] = self.generator_url
        return alert

    def send(self, payloads: list[Payload]) -> None:
        now = self.clock.now()
        post_json(self.url, [self.alert(p, now) for p in payloads], self.timeout_s)

    def refresh(self, firing: list[Payload]) -> None:
        self.send(firing)


class LogNotifier:
    """Writes each notification to the ``modelyard.alerts`` log; never fails."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def send(self, payloads: list[Payload]) -> None:
        for payload in payloads:
            level = logging.INFO if payload["status"] == "resolved" else (
                logging.ERROR if payload.get("severity") == "critical" else logging.WARNING)
            self.logger.log(level, "alert %s [%s]: %s", payload["status"],
                            payload.get("severity"), payload["annotations"]["summary"])


def notifiers_from_settings(config: NotifierSettings, clock: Clock | None = None
                            ) -> list[Notifier]:
    """The notifiers the settings name: log, each webhook, Alertmanager."""
    found: list[Notifier] = [LogNotifier()] if config.log else []
    found += [WebhookNotifier(url, config.timeout_s) for url in config.webhook_urls]
    if config.alertmanager_url:
        found.append(AlertmanagerNotifier(config.alertmanager_url, config.timeout_s,
                                          clock=clock))
    return found


class Outbox:
    """Delivers the ``alert_notifications`` rows that are due; see the module docstring.

    ``firing`` gives the alerts firing now, for reminders (``AlertEvaluator.firing_payloads``).
    """

    def __init__(self, database: Database, notifiers: Sequence[Notifier],
                 clock: Clock | None = None, max_attempts: int = 10, *,
                 firing: Callable[[], list[Payload]] | None = None, batch_size: int = 100,
                 lease_s: float = 60.0, retention: timedelta | None = None) -> None:
        self.database = database
        self.notifiers = {notifier.name: notifier for notifier in notifiers}
        self.clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.firing = firing
        self.batch_size = batch_size
        self.lease_s = lease_s
        self.retention = retention
        self._purged_at = -1e18
        self._reminded: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def deliver_due(self) -> int:
        """Send every due notification once; returns how many were delivered."""
        claimed = self._claim()
        delivered = 0
        for name, rows in claimed.items():
            try:
                self.notifiers[name].send([row["payload"] for row in rows])
            except Exception as error:
                self._failed(name, rows, first_line(str(error)) or type(error).__name__)
            else:
                self._mark(rows, delivered_at=stamp(self.clock.now()))
                delivered += len(rows)
        return delivered

    def _claim(self) -> dict[str, list[Payload]]:
        """The due rows by notifier — per alert and notifier only the oldest undelivered one —
        leased so that a second outbox does not send them too."""
        table = alert_notifications
        now = self.clock.now()
        query = (select(table.c.id, table.c.rule, table.c.subject, table.c.notifier,
                        table.c.payload, table.c.attempts, table.c.next_attempt_at)
                 .where(table.c.delivered_at.is_(None),
                        table.c.attempts < self.max_attempts,
                        table.c.notifier.in_(list(self.notifiers)))
                 .order_by(table.c.id))
        claimed: dict[str, list[Payload]] = {}
        with self.database.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": _OUTBOX_LOCK_KEY})
            seen: set[tuple[str, str, str]] = set()
            for row in conn.execute(query):
                key = (row.rule, row.subject, row.notifier)
                if key in seen:
                    continue
                seen.add(key)
                batch = claimed.setdefault(row.notifier, [])
                if row.next_attempt_at <= stamp(now) and len(batch) < self.batch_size:
                    batch.append({"id": row.id, "attempts": row.attempts,
                                  "payload": dict(row.payload)})
            ids = [row["id"] for rows in claimed.values() for row in rows]
            if ids:
                lease = stamp(now + timedelta(seconds=self.lease_s))
                conn.execute(update(table).where(table.c.id.in_(ids))
                             .values(next_attempt_at=lease))
        return {name: rows for name, rows in claimed.items() if rows}

    def _mark(self, rows: list[Payload], **values: Any) -> None:
        table = alert_notifications
        with self.database.write() as conn:
            conn.execute(update(table).where(table.c.id.in_([r["id"] for r in rows]))
                         .values(**values))

    def _failed(self, name: str, rows: list[Payload], error: str) -> None:
        now = self.clock.now()
        table = alert_notifications
        with self.database.write() as conn:
            for row in rows:
                attempts = row["attempts"] + 1
                retry = stamp(now + timedelta(seconds=backoff_s(attempts)))
                conn.execute(update(table).where(table.c.id == row["id"]).values(
                    attempts=attempts, next_attempt_at=retry, last_error=error[:1000]))
                payload = row["payload"]
                if attempts >= self.max_attempts:
                    log.error("alerts: gave up notifying %s of %s %s on %s after %d attempts: "
                              "%s", name, payload["status"], payload["rule"],
                              payload["subject"], attempts, error)
                else:
                    log.warning("alerts: notifying %s failed (attempt %d, retry in %.0f s): %s",
                                name, attempts, backoff_s(attempts), error)

    def resend_firing(self, *, force: bool = False) -> int:
        """Remind each notifier that needs it (Alertmanager) of the alerts still firing, once
        per its ``resend_s``; returns how many reminders were sent."""
        if self.firing is None:
            return 0
        due = [n for n in self.notifiers.values() if isinstance(n, Reminded) and (
            force or self.clock.monotonic() - self._reminded.get(n.name, -1e18) >= n.resend_s)]
        if not due:
            return 0
        firing = self.firing()
        sent = 0
        for notifier in due:
            self._reminded[notifier.name] = self.clock.monotonic()
            if not firing:
                continue
            try:
                notifier.refresh(firing)
                sent += len(firing)
            except Exception as error:
                log.warning("alerts: reminding %s of %d firing alerts failed: %s",
                            notifier.name, len(firing), first_line(str(error)))
        return sent

    def purge(self, older_than: datetime) -> int:
        """Forget notifications delivered, or given up, before ``older_than``; returns how many.
        Those still being retried stay, whatever their age."""
        table = alert_notifications
        cutoff = stamp(older_than)
        done = or_(table.c.delivered_at < cutoff,
                   and_(table.c.delivered_at.is_(None), table.c.attempts >= self.max_attempts,
                        table.c.created_at < cutoff))
        with self.database.write() as conn:
            return int(conn.execute(delete(table).where(done)).rowcount or 0)

    def run_once(self) -> int:
        """Deliver what is due, then send reminders that are due, and once an hour forget
        what passed the retention; never raises."""
        try:
            delivered = self.deliver_due()
            self.resend_firing()
            if (self.retention is not None
                    and self.clock.monotonic() - self._purged_at >= _PURGE_EVERY_S):
                self._purged_at = self.clock.monotonic()
                self.purge(self.clock.now() - self.retention)
            return delivered
        except Exception:
            log.exception("alerts: the delivery round failed; retrying next tick")
            return 0

    def start(self, tick_s: float = 1.0) -> None:
        """Deliver on a daemon thread every ``tick_s`` until :meth:`close`."""
        def loop() -> None:
            while not self._stop.wait(tick_s):
                self.run_once()

        self._thread = threading.Thread(target=loop, name="modelyard-alerts", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)


@dataclass
class Alerting:
    """Rules, evaluator and outbox built from the monitoring settings, ready to wire."""

    rules: RuleStore
    evaluator: AlertEvaluator
    outbox: Outbox

    @classmethod
    def from_settings(cls, database: Database, config: MonitoringSettings,
                      clock: Clock | None = None) -> Alerting:
        clock = clock or SystemClock()
        rules = RuleStore(database, config.rules_file)
        notifiers = notifiers_from_settings(config.notifiers, clock)
        evaluator = AlertEvaluator(database, rules, [n.name for n in notifiers], clock)
        outbox = Outbox(database, notifiers, clock, config.notifiers.max_attempts,
                        firing=evaluator.firing_payloads,
                        retention=timedelta(days=config.notifiers.retention_days))
        return cls(rules, evaluator, outbox)
