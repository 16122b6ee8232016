"""The audit chain notices edits, removals, reordering and truncation made behind its back."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update

from modelyard.registry import Registry
from modelyard.registry import audit as audit_log
from modelyard.store.tables import audit_head
from modelyard.store.tables import audit_log as log_table

from .conftest import RegisterFn


@pytest.fixture
def history(registry: Registry, add_version: RegisterFn) -> Registry:
    for _ in range(3):
        add_version("churn")
    registry.set_alias("churn", "champion", 2)
    registry.set_alias("churn", "champion", 3)  # 6 entries in all
    return registry


def _verify(registry: Registry) -> audit_log.Verification:
    with registry.db.read() as conn:
        return audit_log.verify(conn)


def test_an_untouched_log_verifies(history: Registry) -> None:
    result = _verify(history)
    assert (result.ok, result.entries, result.first_broken) == (True, 6, None)


def test_an_edited_entry_is_named(history: Registry) -> None:
    with history.db.write() as conn:
        conn.execute(
            update(log_table)
            .where(log_table.c.seq == 4)
            .values(detail='{"after":{"version":1},"before":{"version":null}}')
        )
    result = _verify(history)
    assert (result.ok, result.first_broken) == (False, 4)
    assert "content does not match" in (result.reason or "")


def test_an_edit_that_also_rewrites_the_hash_breaks_the_next_link(history: Registry) -> None:
    with history.db.write() as conn:
        row = conn.execute(select(log_table).where(log_table.c.seq == 3)).one()
        forged = audit_log.entry_hash(
            row.seq, row.ts, "mallory", row.action, row.subject, row.detail, row.prev_hash
        )
        conn.execute(
            update(log_table)
            .where(log_table.c.seq == 3)
            .values(actor="mallory", hash=forged)
        )
    result = _verify(history)
    assert (result.ok, result.first_broken) == (False, 4)
    assert "link" in (result.reason or "")


def test_a_removed_entry_is_named(history: Registry) -> None:
    with history.db.write() as conn:
        conn.execute(delete(log_table).where(log_table.c.seq == 2))
    result = _verify(history)
    assert (result.ok, result.first_broken) == (False, 2)
    assert "missing" in (result.reason or "")


def test_entries_cut_from_the_end_are_noticed(history: Registry) -> None:
    with history.db.write() as conn:
        conn.execute(delete(log_table).where(log_table.c.seq >= 5))
    result = _verify(history)
    assert (result.ok, result.first_broken) == (False, 5)
    assert "head records entry 6" in (result.reason or "")


def test_appending_continues_the_chain_after_verification(
    history: Registry, add_version: RegisterFn
) -> None:
    add_version("churn")
    with history.db.read() as conn:
        head = conn.execute(select(audit_head)).one()
    assert head.seq == 7
    assert _verify(history).ok
