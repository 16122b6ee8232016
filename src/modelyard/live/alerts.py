"""Alert rules over the monitor's window metrics, and alert states: pending → firing → resolved.

After each ended window the monitor hands the metric values of one model version — a
*subject* such as ``churn:3`` — to :meth:`AlertEvaluator.evaluate`. Per rule, a true condition
makes the alert *pending*; once it has held for the rule's ``for`` duration (at once when that
is zero) it is *firing*; when the condition is false again it is *resolved*. A pending alert
whose condition clears leaves no trace, as in Prometheus. A metric missing from a window (no
labels yet, no traffic) is no evidence either way: a pending alert starts over, a firing one
stays firing.

States live in ``alert_states``. A transition to firing or to resolved enqueues one
notification per configured notifier into the ``alert_notifications`` outbox *in the same
transaction*, so an alert is notified once per firing and once per resolve — not every window —
and neither a crash nor a restart loses or repeats one; ``live.notifiers.Outbox`` delivers them.

Rules, the metric-name contract and their three layers live in :mod:`.alert_rules`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text, update

from modelyard.errors import InvalidInput
from modelyard.live._clock import Clock, SystemClock
from modelyard.live.alert_rules import METRICS, STATES, AlertRule, RuleStore, stamp
from modelyard.store import Database
from modelyard.store.tables import alert_notifications, alert_states

log = logging.getLogger("modelyard.alerts")


@dataclass
class _Alert:
    """One row of ``alert_states``."""

    rule: str
    subject: str
    state: str
    labels: dict[str, str]
    value: float | None = None
    pending_since: str | None = None
    firing_since: str | None = None
    resolved_at: str | None = None
    updated_at: str = ""

    def row(self) -> dict[str, Any]:
        return {"rule": self.rule, "subject": self.subject, "state": self.state,
                "value": self.value, "labels": self.labels, "pending_since": self.pending_since,
                "firing_since": self.firing_since, "resolved_at": self.resolved_at,
                "updated_at": self.updated_at}


@dataclass(frozen=True)
class Transition:
    rule: str
    subject: str
    before: str | None
    after: str | None


class AlertEvaluator:
    """Runs the rules over each window's metric values and keeps alert states; see the module.

    ``notifier_names`` are the notifiers that get one outbox row per firing and per resolve
    (``live.notifiers.Notifier.name``).
    """

    def __init__(self, database: Database, rules: RuleStore, notifier_names: Sequence[str],
                 clock: Clock | None = None) -> None:
        self.database = database
        self.rules = rules
        self.notifier_names = list(notifier_names)
        self.clock = clock or SystemClock()

    def evaluate(self, subject: str, labels: Mapping[str, str], values: Mapping[str, Any],
                 at: datetime | None = None) -> list[Transition]:
        """Judge one model version's window (``values`` by metric name) at ``at`` (now)."""
        when = at or self.clock.now()
        now = stamp(when)
        model = labels.get("model") or subject.partition(":")[0]
        rules = {rule.name: rule for rule in self.rules.rules(model)}
        changes: list[Transition] = []
        with self.database.write() as conn:
            if conn.dialect.name == "postgresql":  # evaluations of one subject take turns
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": _lock_key(subject)})
            query = select(alert_states).where(alert_states.c.subject == subject)
            known = {row.rule: _Alert(**row._asdict()) for row in conn.execute(query)}
            for name in sorted(rules.keys() | known.keys()):
                alert, rule = known.get(name), rules.get(name)
                if alert is not None and alert.updated_at > now:
                    continue  # an older window judged late never overrides a newer one
                reading: tuple[bool | None, float | None, list[str]] = (
                    (False, None, []) if rule is None else rule.read(values))
                holds, value, features = reading
                before = None if alert is None else alert.state
                after, notify = self._step(conn, alert, rule, name, subject, labels, holds,
                                           value, features, when)
                if after != before:
                    changes.append(Transition(name, subject, before, after))
                if notify is not None:
                    self._enqueue(conn, notify, now)
        for change in changes:
            log.info("alert %s on %s: %s → %s", change.rule, change.subject,
                     change.before or "inactive", change.after or "inactive")
        return changes

    def _step(self, conn: Connection, alert: _Alert | None, rule: AlertRule | None, name: str,
              subject: str, labels: Mapping[str, str], holds: bool | None, value: float | None,
              features: list[str], when: datetime) -> tuple[str | None, dict[str, Any] | None]:
        """Advance one alert; writes its row and returns its new state and a notification."""
        now = stamp(when)
        if alert is None:
            if not holds or rule is None:
                return None, None
            alert = _Alert(name, subject, "resolved", _labels(rule, labels, features))
            conn.execute(insert(alert_states).values(**{**alert.row(), "updated_at": now}))
        state, notify = alert.state, None
        if holds:
            if alert.state != "firing":
                assert rule is not None
                alert.labels = _labels(rule, labels, features)
                if alert.state == "resolved":
                    alert.state, alert.pending_since = "pending", now
                assert alert.pending_since is not None
                held = (when - datetime.fromisoformat(alert.pending_since)).total_seconds()
                if held >= rule.for_s:
                    alert.state, alert.firing_since = "firing", now
            alert.value = value
        elif alert.state == "firing" and holds is False:
            alert.state, alert.resolved_at, alert.value = "resolved", now, value
        elif alert.state == "pending":
            if alert.resolved_at is None:  # it never fired: no trace, as in Prometheus
                conn.execute(delete(alert_states).where(
                    alert_states.c.rule == name, alert_states.c.subject == subject))
                return None, None
            alert.state, alert.pending_since = "resolved", None
        if (alert.state == "firing" and state != "firing") or (
                state == "firing" and alert.state == "resolved"):
            notify = notification(alert, rule, features)
        if rule is None and alert.state == "resolved":  # a removed rule's alert is done
            conn.execute(delete(alert_states).where(
                alert_states.c.rule == name, alert_states.c.subject == subject))
            return None, notify
        alert.updated_at = now
        conn.execute(update(alert_states).where(
            alert_states.c.rule == name, alert_states.c.subject == subject).values(alert.row()))
        return alert.state, notify

    def _enqueue(self, conn: Connection, payload: dict[str, Any], now: str) -> None:
        rows = [{"rule": payload["rule"], "subject": payload["subject"],
                 "status": payload["status"], "notifier": notifier, "payload": payload,
                 "created_at": now, "attempts": 0, "next_attempt_at": now,
                 "delivered_at": None, "last_error": None}
                for notifier in self.notifier_names]
        if rows:
            conn.execute(insert(alert_notifications), rows)

    def list_alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        return list_alerts(self.database, state)

    def firing_payloads(self) -> list[dict[str, Any]]:
        """A firing notification for every alert firing now (for notifiers that must be
        reminded, such as Alertmanager)."""
        rules = {rule.name: rule for rule in self.rules.rules()}
        query = select(alert_states).where(alert_states.c.state == "firing").order_by(
            alert_states.c.rule, alert_states.c.subject)
        with self.database.read() as conn:
            found = [_Alert(**row._asdict()) for row in conn.execute(query)]
        return [notification(alert, rules.get(alert.rule), []) for alert in found]


def _labels(rule: AlertRule, subject: Mapping[str, str],
            features: list[str]) -> dict[str, str]:
    labels = {**rule.labels, **{str(k): str(v) for k, v in subject.items()},
              "alertname": rule.name, "severity": rule.severity}
    if rule.feature is not None:
        labels["feature"] = rule.feature
    return labels


def notification(alert: _Alert, rule: AlertRule | None, features: list[str]) -> dict[str, Any]:
    """The notifier-neutral notification of an alert's state (the webhook's JSON)."""
    status = "firing" if alert.state == "firing" else "resolved"
    shown = "?" if alert.value is None else f"{alert.value:.4g}"
    if rule is None:
        summary = f"{alert.rule} on {alert.subject}"
        description = "the rule was removed" if status == "resolved" else ""
    else:
        summary = f"{rule.name} on {alert.subject}: {rule.metric} = {shown} ({rule.summary()})"
        description = rule.description or METRICS[rule.metric]
        if features:
            description += f"; features: {', '.join(features)}"
    return {
        "status": status, "rule": alert.rule, "subject": alert.subject,
        "labels": dict(alert.labels),
        "annotations": {"summary": summary, "description": description},
        "startsAt": alert.firing_since,
        "endsAt": alert.resolved_at if status == "resolved" else None,
        "value": alert.value, "severity": alert.labels.get("severity"),
        "metric": None if rule is None else rule.metric,
        "op": None if rule is None else rule.op,
        "threshold": None if rule is None else rule.threshold,
    }


def list_alerts(database: Database, state: str | None = None) -> list[dict[str, Any]]:
    """Alerts and their states, firing first; ``state`` keeps one state."""
    if state is not None and state not in STATES:
        raise InvalidInput(f"alert state must be one of {', '.join(STATES)}, not {state!r}")
    query = select(alert_states)
    if state is not None:
        query = query.where(alert_states.c.state == state)
    with database.read() as conn:
        rows = [dict(row._asdict()) for row in conn.execute(query)]
    for row in rows:
        row["labels"] = dict(row["labels"])
    return sorted(rows, key=lambda r: (STATES.index(r["state"]), r["rule"], r["subject"]))


def _lock_key(subject: str) -> int:
    digest = hashlib.blake2b(f"alerts:{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
