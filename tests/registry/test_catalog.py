from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import (
    AliasNotFound,
    InvalidInput,
    ModelNotFound,
    TagNotFound,
    VersionNotFound,
)
from modelyard.registry import ModelRef, PackageManifest, Registry
from modelyard.registry import audit as audit_log

from .conftest import RegisterFn


def test_versions_count_up_from_one_per_model(add_version: RegisterFn) -> None:
    assert [add_version("churn").version for _ in range(3)] == [1, 2, 3]
    assert add_version("fraud").version == 1


def test_a_version_keeps_its_package_and_manifest(
    registry: Registry, add_version: RegisterFn
) -> None:
    v = add_version("churn", tags={"team": "growth"})
    folder = registry.artifacts.open_dir(v.artifact_uri)
    assert (folder / "model" / "model.bin").read_bytes() == b"weights"
    manifest = PackageManifest.read(folder, expected_sha256=v.manifest_sha256)
    assert manifest.name == "churn"
    assert v.tags == {"team": "growth"}
    assert v.created_by == "tester"


def test_a_bare_name_resolves_to_champion_else_latest(
    registry: Registry, add_version: RegisterFn
) -> None:
    for _ in range(3):
        add_version("churn")
    assert registry.get_version("churn").version == 3
    registry.set_alias("churn", "champion", 2)
    assert registry.get_version("churn").version == 2
    assert registry.get_version("churn@champion").version == 2
    assert registry.get_version("churn:1").version == 1


def test_aliases_move_and_are_removed(registry: Registry, add_version: RegisterFn) -> None:
    add_version("churn", alias="champion")
    add_version("churn")
    assert registry.get_model("churn").aliases == {"champion": 1}
    registry.set_alias("churn", "champion", 2)
    registry.set_alias("churn", "challenger", 1)
    assert registry.get_model("churn").aliases == {"champion": 2, "challenger": 1}
    assert registry.remove_alias("churn", "challenger") == 1
    with pytest.raises(AliasNotFound, match="no alias 'challenger'; its aliases: champion"):
        registry.get_version("churn@challenger")


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        ("nobody", ModelNotFound, "'nobody' is not registered"),
        ("churn:7", VersionNotFound, "no version 7 .latest is 1"),
        ("churn@gold", AliasNotFound, "has no alias 'gold'"),
        ("churn:zero", InvalidInput, "not a positive whole number"),
        ("bad name!", InvalidInput, "not allowed"),
    ],
)
def test_unknown_references_name_the_problem(
    registry: Registry, add_version: RegisterFn, ref: str, error: type[Exception], message: str
) -> None:
    add_version("churn")
    with pytest.raises(error, match=message):
        registry.get_version(ref)


def test_alias_that_looks_like_a_number_is_refused(
    registry: Registry, add_version: RegisterFn
) -> None:
    add_version("churn")
    with pytest.raises(InvalidInput, match="would read as a version"):
        registry.set_alias("churn", "3", 1)


def test_tags_are_set_changed_and_removed(registry: Registry, add_version: RegisterFn) -> None:
    add_version("churn")
    ref = ModelRef.parse("churn:1")
    registry.set_tag(ref, "stage", "staging")
    registry.set_tag(ref, "stage", "production")
    assert registry.get_version(ref).tags == {"stage": "production"}
    registry.remove_tag(ref, "stage")
    assert registry.get_version(ref).tags == {}
    with pytest.raises(TagNotFound):
        registry.remove_tag(ref, "stage")


def test_deleting_a_version_hides_it_and_drops_its_aliases(
    registry: Registry, add_version: RegisterFn
) -> None:
    add_version("churn")
    add_version("churn", alias="champion")
    registry.delete_version("churn", 2)
    with pytest.raises(VersionNotFound, match="was deleted"):
        registry.get_version("churn:2")
    assert registry.get_version("churn").version == 1
    assert registry.get_model("churn").aliases == {}
    assert [v.version for v in registry.list_versions("churn")] == [1]
    assert [v.version for v in registry.list_versions("churn", include_deleted=True)] == [1, 2]


def test_deleting_a_model_is_soft_and_numbers_are_never_reused(
    registry: Registry, add_version: RegisterFn
) -> None:
    add_version("churn")
    add_version("churn")
    registry.delete_model("churn")
    assert registry.list_models() == []
    assert [m.name for m in registry.list_models(include_deleted=True)] == ["churn"]
    with pytest.raises(ModelNotFound, match="was deleted"):
        registry.get_version("churn")
    assert add_version("churn").version == 3
    assert [v.version for v in registry.list_versions("churn")] == [3]


def test_every_change_is_in_the_audit_log(registry: Registry, add_version: RegisterFn) -> None:
    add_version("churn")
    add_version("churn", alias="champion")
    registry.set_alias("churn", "champion", 1)
    registry.set_tag(ModelRef.parse("churn:1"), "stage", "prod")
    registry.delete_version("churn", 2)
    with registry.db.read() as conn:
        entries = audit_log.entries(conn)
        verified = audit_log.verify(conn)
    actions = [(e.action, e.subject) for e in reversed(entries)]
    assert actions == [
        ("model.create", "churn"),
        ("version.register", "churn:1"),
        ("version.register", "churn:2"),
        ("alias.set", "churn@champion"),
        ("alias.set", "churn@champion"),
        ("tag.set", "churn:1"),
        ("version.delete", "churn:2"),
    ]
    move = entries[2]
    assert (move.detail["before"], move.detail["after"]) == ({"version": 2}, {"version": 1})
    assert all(e.actor == "tester" for e in entries)
    assert verified.ok
    assert verified.entries == 7


def test_audit_entries_can_be_filtered_by_model(
    registry: Registry, add_version: RegisterFn
) -> None:
    add_version("churn", alias="champion")
    add_version("churner")
    with registry.db.read() as conn:
        subjects = {e.subject for e in audit_log.entries(conn, subject="churn")}
    assert subjects == {"churn", "churn:1", "churn@champion"}


def test_orphaned_folders_are_found_and_removed(
    registry: Registry, add_version: RegisterFn, tmp_path: Path
) -> None:
    kept = add_version("churn")
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "half.bin").write_bytes(b"x")
    orphan = registry.artifacts.put("churn", stray)
    assert registry.orphans(min_age_s=3600) == []  # too young: may be a registration under way
    assert registry.orphans(min_age_s=0) == [orphan]
    assert registry.remove_orphans(min_age_s=0) == [orphan]
    assert registry.orphans(min_age_s=0) == []
    assert registry.artifacts.open_dir(kept.artifact_uri).is_dir()
