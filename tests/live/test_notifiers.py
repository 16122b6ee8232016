"""Notifications leave through the outbox: a real webhook receiver and a real Alertmanager."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelyard.api.workspace import open_database
from modelyard.errors import InvalidInput, Unavailable
from modelyard.live.alert_rules import AlertRule, RuleStore, stamp
from modelyard.live.alerts import AlertEvaluator
from modelyard.live.notifiers import (
    Alerting,
    AlertmanagerNotifier,
    LogNotifier,
    Notifier,
    Outbox,
    WebhookNotifier,
    notifiers_from_settings,
)
from modelyard.settings import MonitoringSettings, NotifierSettings, StoreSettings
from modelyard.store import Database
from modelyard.store.tables import alert_notifications

from .test_alerts import LABELS, T0, WINDOW, FakeClock

RULE = AlertRule("DriftShareHigh", "drift_share", ">", 0.3, severity="critical",
                 labels={"team": "growth"}, description="a third of the features drifted")


class Receiver:
    """An HTTP server on a loopback port that records each POST and answers the next code."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.codes = list(codes or [])
        self.posts: list[tuple[str, int, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = receiver.codes.pop(0) if receiver.codes else 200
                receiver.posts.append((self.path, code, body))
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if code >= 400 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> list[Any]:
        return [body for _, code, body in self.posts if code < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def setup(url: str, notifiers: list[Notifier], clock: FakeClock, max_attempts: int = 10
          ) -> tuple[Database, AlertEvaluator, Outbox]:
    db = open_database(url, StoreSettings())
    rules = RuleStore(db, defaults=False)
    rules.add(RULE)
    alerts = AlertEvaluator(db, rules, [n.name for n in notifiers], clock)
    outbox = Outbox(db, notifiers, clock, max_attempts, firing=alerts.firing_payloads)
    return db, alerts, outbox


def outbox_rows(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        query = select(alert_notifications).order_by(alert_notifications.c.id)
        return [dict(row._asdict()) for row in conn.execute(query)]


def test_a_failed_webhook_is_retried_with_backoff_and_delivered_exactly_once(
    database_url: str, receiver: Receiver
) -> None:
    receiver.codes = [500]
    clock = FakeClock()
    webhook = WebhookNotifier(receiver.url + "/hooks/alerts", timeout_s=5)
    db, alerts, outbox = setup(database_url, [webhook], clock)
    alerts.evaluate("churn:3", LABELS, {"drift_share": 0.6})

    assert outbox.deliver_due() == 0
    [row] = outbox_rows(db)
    assert row["attempts"] == 1
    assert row["last_error"] == f"{receiver.url} answered HTTP 500: no"
    assert row["next_attempt_at"] == stamp(T0 + timedelta(seconds=1))
    assert outbox.deliver_due() == 0  # not due yet
    assert len(receiver.posts) == 1
    clock.at += timedelta(seconds=1)
    assert outbox.deliver_due() == 1
    clock.at += timedelta(minutes=10)
    assert outbox.deliver_due() == 0

    [body] = receiver.delivered()
    assert receiver.posts[-1][0] == "/hooks/alerts"
    assert body["source"] == "modelyard"
    [alert] = body["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == {"alertname": "DriftShareHigh", "severity": "critical",
                               "team": "growth", "model": "churn", "version": "3"}
    assert (alert["value"], alert["severity"], alert["rule"]) == (0.6, "critical",
                                                                  "DriftShareHigh")
    assert alert["startsAt"] == stamp(T0)
    assert alert["endsAt"] is None
    assert alert["annotations"]["description"] == "a third of the features drifted"

    for _ in range(3):  # firing windows: no new notification
        clock.at += WINDOW
        alerts.evaluate("churn:3", LABELS, {"drift_share": 0.7})
        outbox.deliver_due()
    clock.at += WINDOW
    alerts.evaluate("churn:3", LABELS, {"drift_share": 0.1})
    assert outbox.deliver_due() == 1
    assert [b["alerts"][0]["status"] for b in receiver.delivered()] == ["firing", "resolved"]
    resolved = receiver.delivered()[1]["alerts"][0]
    assert resolved["endsAt"] == stamp(clock.at)
    assert all(row["delivered_at"] is not None for row in outbox_rows(db))


def test_backoff_doubles_then_the_outbox_gives_up_and_keeps_the_error(
    database_url: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.codes = [503] * 10
    clock = FakeClock()
    webhook = WebhookNotifier(receiver.url, timeout_s=5)
    db, alerts, outbox = setup(database_url, [webhook], clock, max_attempts=4)
    alerts.evaluate("churn:3", LABELS, {"drift_share": 0.6})
    waits = []
    with caplog.at_level(logging.WARNING, logger="modelyard.alerts"):
        for _ in range(4):
            assert outbox.deliver_due() == 0
            [row] = outbox_rows(db)
            due = datetime.fromisoformat(row["next_attempt_at"])
            waits.append((due - clock.at).total_seconds())
            clock.at = due
        clock.at += timedelta(hours=1)
        assert outbox.deliver_due() == 0
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert len(receiver.posts) == 4
    [row] = outbox_rows(db)
    assert (row["attempts"], row["delivered_at"]) == (4, None)
    assert "HTTP 503" in row["last_error"]
    assert "gave up notifying webhook:" in caplog.text


def test_delivered_and_given_up_notifications_are_forgotten_after_the_retention(
    database_url: str, receiver: Receiver
) -> None:
    clock = FakeClock()
    db, alerts, _ = setup(database_url, [WebhookNotifier(receiver.url, timeout_s=5)], clock)
    outbox = Outbox(db, [WebhookNotifier(receiver.url, timeout_s=5)], clock, max_attempts=2,
                    firing=alerts.firing_payloads, retention=timedelta(days=30))
    alerts.evaluate("churn:3", LABELS, {"drift_share": 0.6})
    assert outbox.run_once() == 1  # delivered
    receiver.codes = [503] * 10
    alerts.evaluate("churn:4", LABELS, {"drift_share": 0.6})
    outbox.run_once()
    clock.at += timedelta(seconds=2)
    outbox.run_once()  # its second failure: given up
    clock.at += timedelta(days=29)
    alerts.evaluate("churn:5", LABELS, {"drift_share": 0.6})
    outbox.run_once()  # failed once, still being retried
    assert len(outbox_rows(db)) == 3
    clock.at += timedelta(days=2)  # the first two are past 30 days, the third is not
    assert outbox.purge(clock.at - timedelta(days=30)) == 2
    assert [row["subject"] for row in outbox_rows(db)] == ["churn:5"]


def test_a_resolve_never_overtakes_its_firing(database_url: str, receiver: Receiver) -> None:
    receiver.codes = [500]
    clock = FakeClock()
    _db, alerts, outbox = setup(database_url, [WebhookNotifier(receiver.url)], clock)
    alerts.evaluate("churn:3", LABELS, {"drift_share": 0.6})
    assert outbox.deliver_due() == 0
    clock.at += timedelta(milliseconds=500)
    alerts.evaluate("churn:3", LABELS, {"drift_share": 0.0})
    assert outbox.deliver_due() == 0  # the resolve waits behind its firing
    clock.at += timedelta(seconds=1)
    assert outbox.deliver_due() == 1
    assert outbox.deliver_due() == 1
    assert [b["alerts"][0]["status"] for b in receiver.delivered()] == ["firing", "resolved"]


def test_firing_alerts_are_re_sent_to_alertmanager_but_not_to_the_webhook(
    database_url: str, receiver: Receiver
) -> None:
    manager = Receiver()
    try:
        clock = FakeClock()
        alertmanager = AlertmanagerNotifier(manager.url, resend_s=60, clock=clock)
        webhook = WebhookNotifier(receiver.url)
        _db, alerts, outbox = setup(database_url, [webhook, alertmanager], clock)
        alerts.evaluate("churn:3", LABELS, {"drift_share": 0.6})
        assert outbox.run_once() == 2  # the firing, and the first reminder at once
        assert len(manager.delivered()) == 2
        for _ in range(5):
            clock.at += timedelta(seconds=30)
            alerts.evaluate("churn:3", LABELS, {"drift_share": 0.6})
            outbox.run_once()
        assert len(receiver.delivered()) == 1
        assert len(manager.delivered()) == 4  # reminded at 60 s and 120 s
        path, _, [alert] = manager.posts[-1]
        assert path == "/api/v2/alerts"
        assert alert["labels"] == {"alertname": "DriftShareHigh", "severity": "critical",
                                   "team": "growth", "model": "churn", "version": "3"}
        assert alert["startsAt"] == stamp(T0)
        assert alert["endsAt"] == stamp(T0 + timedelta(seconds=120 + 4 * 60))
        assert alert["annotations"]["value"] == "0.6"

        clock.at += timedelta(seconds=30)
        alerts.evaluate("churn:3", LABELS, {"drift_share": 0.0})
        outbox.run_once()
        clock.at += timedelta(minutes=5)
        outbox.run_once()
        [resolved] = manager.delivered()[-1]
        assert resolved["endsAt"] == stamp(T0 + timedelta(seconds=180))
        assert len(manager.delivered()) == 5
        assert [b["alerts"][0]["status"] for b in receiver.delivered()] == ["firing", "resolved"]
    finally:
        manager.close()


def test_delivery_errors_are_one_line_and_never_show_the_url_path() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    webhook = WebhookNotifier(f"http://127.0.0.1:{port}/T000/B000/secret-token", timeout_s=2)
    with pytest.raises(Unavailable) as caught:
        webhook.send([])
    assert str(caught.value).startswith(f"cannot reach http://127.0.0.1:{port}: ")
    assert "secret" not in str(caught.value)
    with pytest.raises(InvalidInput, match="webhook URL must be an http:// or https:// URL"):
        WebhookNotifier("file:///etc/passwd")
    with pytest.raises(InvalidInput, match="Alertmanager URL must be"):
        AlertmanagerNotifier("localhost:9093")


def test_the_log_notifier_writes_each_alert(caplog: pytest.LogCaptureFixture) -> None:
    payload = {"status": "firing", "severity": "critical",
               "annotations": {"summary": "DriftShareHigh on churn:3: drift_share = 0.6"}}
    with caplog.at_level(logging.INFO, logger="modelyard.alerts"):
        LogNotifier().send([payload, {**payload, "status": "resolved"}])
    assert [r.levelname for r in caplog.records] == ["ERROR", "INFO"]
    assert "alert firing [critical]: DriftShareHigh on churn:3" in caplog.text


def test_notifiers_follow_the_settings(tmp_path: Path) -> None:
    config = NotifierSettings(webhook_urls=["http://a.example/x", "http://b.example/x"],
                              alertmanager_url="http://127.0.0.1:9093", log=True)
    names = [n.name for n in notifiers_from_settings(config)]
    assert names[0] == "log"
    assert names[-1] == "alertmanager"
    assert len(set(names)) == 4
    assert names == [n.name for n in notifiers_from_settings(config)]  # stable
    assert notifiers_from_settings(NotifierSettings(log=False)) == []

    rules = tmp_path / "alerts.yaml"
    rules.write_text("rules:\n  - {name: Few, metric: rows, op: '<', threshold: 10}\n")
    settings = MonitoringSettings(rules_file=rules, notifiers=config)
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}", StoreSettings())
    alerting = Alerting.from_settings(db, settings)
    assert "Few" in {rule.name for rule in alerting.rules.rules()}
    assert alerting.evaluator.notifier_names == names
    assert alerting.outbox.max_attempts == config.max_attempts


# -- a real Alertmanager -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
    if not Path(binary).exists():
        pytest.fail("prometheus-alertmanager is not installed: run scripts/services.sh "
                    "(apt-get install -y prometheus-alertmanager)")
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n")
    port = _free_port()
    output = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=output, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail("alertmanager exited: "
                            + (tmp_path / "alertmanager.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("alertmanager was not ready within 30 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()


def _active(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts?active=true", timeout=5) as answer:
        found: list[dict[str, Any]] = json.loads(answer.read())
    return [a for a in found if a["labels"].get("alertname") == RULE.name]


@pytest.mark.slow
def test_a_real_alertmanager_shows_the_alert_while_it_fires_and_not_after(
    alertmanager: str, tmp_path: Path
) -> None:
    clock = FakeClock(datetime.now(UTC))
    notifier = AlertmanagerNotifier(alertmanager, timeout_s=5, clock=clock,
                                    generator_url="http://modelyard.example/ui/")
    _, alerts, outbox = setup(f"sqlite:///{tmp_path / 'm.db'}", [notifier], clock)
    alerts.evaluate("churn:3", LABELS, {"drift_share": 0.6})
    assert outbox.deliver_due() == 1
    [alert] = _active(alertmanager)
    assert alert["labels"] == {"alertname": "DriftShareHigh", "severity": "critical",
                               "team": "growth", "model": "churn", "version": "3"}
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["description"] == "a third of the features drifted"
    assert alert["generatorURL"] == "http://modelyard.example/ui/"
    ends = datetime.fromisoformat(alert["endsAt"])
    assert timedelta(minutes=3) < ends - clock.now() <= timedelta(minutes=4, seconds=1)

    clock.at += timedelta(seconds=60)  # a reminder a minute later pushes endsAt on
    assert outbox.resend_firing() == 1
    [alert] = _active(alertmanager)
    assert datetime.fromisoformat(alert["endsAt"]) - ends == timedelta(seconds=60)

    clock.at = datetime.now(UTC)
    alerts.evaluate("churn:3", LABELS, {"drift_share": 0.05})
    assert outbox.deliver_due() == 1
    deadline = time.monotonic() + 10
    while _active(alertmanager) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _active(alertmanager) == []
