"""The audit log: an append-only, hash-chained record of every change to the registry.

Each entry's hash covers its own fields and the previous entry's hash, so editing, removing or
reordering any row breaks the chain from that row on; the head row (the newest seq and hash)
also catches rows cut from the end. Entries are written in the same transaction as the change
they record, so no change exists without its entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from modelyard.events import Action
from modelyard.store.tables import audit_head, audit_log

GENESIS = "0" * 64


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "before": self.detail.get("before"),
            "after": self.detail.get("after"),
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_broken: int | None = None
    reason: str | None = None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    seq: int, ts: str, actor: str, action: str, subject: str, detail: str, prev_hash: str
) -> str:
    payload = _canonical([seq, ts, actor, action, subject, detail, prev_hash])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def append(
    conn: Connection,
    actor: str,
    action: Action,
    subject: str,
    before: Any = None,
    after: Any = None,
) -> AuditEntry:
    """Append one entry inside the caller's write transaction (locks the head row)."""
    head = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).one()
    seq = head.seq + 1
    ts = now()
    detail = _canonical({"before": before, "after": after})
    digest = entry_hash(seq, ts, actor, action.value, subject, detail, head.hash)
    conn.execute(
        audit_log.insert().values(
            seq=seq,
            ts=ts,
            actor=actor,
            action=action.value,
            subject=subject,
            detail=detail,
            prev_hash=head.hash,
            hash=digest,
        )
    )
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))
    return AuditEntry(seq, ts, actor, action.value, subject, json.loads(detail), head.hash, digest)


def entries(
    conn: Connection, subject: str | None = None, limit: int | None = None
) -> list[AuditEntry]:
    """Entries, newest first; ``subject`` keeps those of one model (``churn``, ``churn:3``)."""
    query = select(audit_log).order_by(audit_log.c.seq.desc())
    if subject:
        query = query.where(
            (audit_log.c.subject == subject) | audit_log.c.subject.like(f"{subject}:%")
            | audit_log.c.subject.like(f"{subject}@%")
        )
    if limit:
        query = query.limit(limit)
    return [_entry(row) for row in conn.execute(query)]


def verify(conn: Connection, batch: int = 5000) -> Verification:
    """Recompute the chain from the first entry; report the first entry that does not hold."""
    expected_prev = GENESIS
    expected_seq = 1
    count = 0
    for row in _scan(conn, batch):
        count += 1
        if row.seq != expected_seq:
            return Verification(False, count, expected_seq, f"entry {expected_seq} is missing")
        if row.prev_hash != expected_prev:
            return Verification(
                False, count, row.seq, "its link to the previous entry does not match"
            )
        digest = entry_hash(
            row.seq, row.ts, row.actor, row.action, row.subject, row.detail, row.prev_hash
        )
        if digest != row.hash:
            return Verification(False, count, row.seq, "its content does not match its hash")
        expected_prev = row.hash
        expected_seq += 1
    head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).one()
    if head.seq != expected_seq - 1 or head.hash != expected_prev:
        return Verification(
            False,
            count,
            expected_seq,
            f"the log ends at entry {expected_seq - 1} but the head records entry {head.seq}",
        )
    return Verification(True, count)


def _scan(conn: Connection, batch: int) -> Iterator[Any]:
    last = 0
    while True:
        rows = conn.execute(
            select(audit_log).where(audit_log.c.seq > last).order_by(audit_log.c.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        row.seq,
        row.ts,
        row.actor,
        row.action,
        row.subject,
        json.loads(row.detail),
        row.prev_hash,
        row.hash,
    )
