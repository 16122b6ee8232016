"""The catalog: models, their numbered versions, aliases and tags, every change audited."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelyard.errors import AliasNotFound, ModelNotFound, TagNotFound, VersionNotFound
from modelyard.events import Action
from modelyard.registry import audit
from modelyard.registry.artifacts import ArtifactStore
from modelyard.registry.manifest import PackageManifest
from modelyard.registry.refs import ModelRef, check_alias, check_name, check_tag_key
from modelyard.store import Database
from modelyard.store.tables import aliases, models, version_tags, versions


@dataclass
class VersionInfo:
    name: str
    version: int
    created_at: str
    created_by: str
    description: str
    flavor: str
    task: str
    artifact_uri: str
    manifest_sha256: str
    manifest: dict[str, Any]
    deleted_at: str | None = None
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def as_dict(self, with_manifest: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_manifest:
            data.pop("manifest")
        return data


@dataclass
class ModelInfo:
    name: str
    description: str
    created_at: str
    created_by: str
    latest_version: int | None
    versions: int
    aliases: dict[str, int]
    deleted_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Registry:
    """Reads and changes the catalog; each change is one transaction with its audit entry."""

    def __init__(self, db: Database, artifacts: ArtifactStore, actor: str) -> None:
        self.db = db
        self.artifacts = artifacts
        self.actor = actor

    # -- registering -------------------------------------------------------------------

    def create_version(
        self,
        package_dir: Path,
        manifest: PackageManifest,
        manifest_sha256: str,
        tags: dict[str, str] | None = None,
        alias: str | None = None,
    ) -> VersionInfo:
        """Store a finished package folder and make it the model's next version."""
        name = check_name(manifest.name)
        if alias:
            check_alias(alias)
        for key in tags or {}:
            check_tag_key(key)
        uri = self.artifacts.put(name, package_dir)
        with self.db.write() as conn:
            model = self._lock_model(conn, name, create=True, description=manifest.description)
            conn.execute(
                update(models)
                .where(models.c.id == model.id)
                .values(last_version=models.c.last_version + 1)
            )
            number = conn.execute(
                select(models.c.last_version).where(models.c.id == model.id)
            ).scalar_one()
            created_at = audit.now()
            version_id = conn.execute(
                insert(versions)
                .values(
                    model_id=model.id,
                    version=number,
                    created_at=created_at,
                    created_by=self.actor,
                    description=manifest.description,
                    flavor=manifest.flavor.name,
                    task=manifest.task.value,
                    artifact_uri=uri,
                    manifest_sha256=manifest_sha256,
                    manifest=manifest.model_dump(mode="json"),
                )
                .returning(versions.c.id)
            ).scalar_one()
            for key, value in (tags or {}).items():
                conn.execute(
                    insert(version_tags).values(version_id=version_id, key=key, value=value)
                )
            audit.append(
                conn,
                self.actor,
                Action.VERSION_REGISTER,
                f"{name}:{number}",
                after={
                    "flavor": manifest.flavor.name,
                    "task": manifest.task.value,
                    "artifact_uri": uri,
                    "manifest_sha256": manifest_sha256,
                    "tags": tags or {},
                },
            )
            if alias:
                self._move_alias(conn, model.id, name, alias, version_id, number)
        return self.get_version(ModelRef(name, version=number))

    def _lock_model(
        self, conn: Connection, name: str, create: bool = False, description: str = ""
    ) -> Row[Any]:
        query = select(models).where(models.c.name == name).with_for_update()
        row = conn.execute(query).first()
        if row is None and create:
            ins = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
            conn.execute(
                ins(models)
                .values(
                    name=name,
                    description=description,
                    created_at=audit.now(),
                    created_by=self.actor,
                    last_version=0,
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = conn.execute(query).one()
            if row.last_version == 0:
                audit.append(conn, self.actor, Action.MODEL_CREATE, name, after={"name": name})
        if row is None:
            raise ModelNotFound(f"model {name!r} is not registered")
        if row.deleted_at is not None:
            if not create:
                raise ModelNotFound(f"model {name!r} was deleted on {row.deleted_at}")
            conn.execute(update(models).where(models.c.id == row.id).values(deleted_at=None))
            audit.append(
                conn, self.actor, Action.MODEL_RESTORE, name, before={"deleted_at": row.deleted_at}
            )
        return row

    # -- reading -----------------------------------------------------------------------

    def list_models(self, include_deleted: bool = False) -> list[ModelInfo]:
        with self.db.read() as conn:
            query = select(models).order_by(models.c.name)
            if not include_deleted:
                query = query.where(models.c.deleted_at.is_(None))
            return [self._model_info(conn, row) for row in conn.execute(query).all()]

    def get_model(self, name: str) -> ModelInfo:
        with self.db.read() as conn:
            return self._model_info(conn, self._model_row(conn, name))

    def list_versions(self, name: str, include_deleted: bool = False) -> list[VersionInfo]:
        with self.db.read() as conn:
            model = self._model_row(conn, name)
            query = select(versions).where(versions.c.model_id == model.id)
            if not include_deleted:
                query = query.where(versions.c.deleted_at.is_(None))
            rows = conn.execute(query.order_by(versions.c.version)).all()
            return [self._version_info(conn, model.name, row) for row in rows]

    def get_version(self, ref: ModelRef | str) -> VersionInfo:
        """The version a reference names: ``:N``, ``@alias``, or for a bare name the
        ``champion`` alias when set, else the newest version."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        with self.db.read() as conn:
            model = self._model_row(conn, ref.name)
            row = self._resolve(conn, model, ref)
            return self._version_info(conn, model.name, row)

    def _resolve(self, conn: Connection, model: Row[Any], ref: ModelRef) -> Row[Any]:
        if ref.alias or ref.version is None:
            alias = ref.alias or "champion"
            version_id = conn.execute(
                select(aliases.c.version_id).where(
                    aliases.c.model_id == model.id, aliases.c.alias == alias
                )
            ).scalar()
            if version_id is not None:
                return conn.execute(select(versions).where(versions.c.id == version_id)).one()
            if ref.alias:
                known = self._aliases(conn, model.id)
                hint = f"; its aliases: {', '.join(sorted(known))}" if known else "; it has none"
                raise AliasNotFound(f"model {model.name!r} has no alias {ref.alias!r}{hint}")
            row = conn.execute(
                select(versions)
                .where(versions.c.model_id == model.id, versions.c.deleted_at.is_(None))
                .order_by(versions.c.version.desc())
                .limit(1)
            ).first()
            if row is None:
                raise VersionNotFound(f"model {model.name!r} has no versions")
            return row
        row = conn.execute(
            select(versions).where(
                versions.c.model_id == model.id, versions.c.version == ref.version
            )
        ).first()
        if row is None:
            raise VersionNotFound(
                f"model {model.name!r} has no version {ref.version} "
                f"(latest is {model.last_version})"
            )
        if row.deleted_at is not None:
            raise VersionNotFound(f"version {ref} was deleted on {row.deleted_at}")
        return row

    def _model_row(self, conn: Connection, name: str) -> Row[Any]:
        row = conn.execute(select(models).where(models.c.name == check_name(name))).first()
        if row is None:
            raise ModelNotFound(f"model {name!r} is not registered")
        if row.deleted_at is not None:
            raise ModelNotFound(f"model {name!r} was deleted on {row.deleted_at}")
        return row

    def _aliases(self, conn: Connection, model_id: int) -> dict[str, int]:
        rows = conn.execute(
            select(aliases.c.alias, versions.c.version)
            .join(versions, versions.c.id == aliases.c.version_id)
            .where(aliases.c.model_id == model_id)
        ).all()
        return {row.alias: row.version for row in rows}

    def _model_info(self, conn: Connection, row: Row[Any]) -> ModelInfo:
        live = conn.execute(
            select(func.count(), func.max(versions.c.version)).where(
                versions.c.model_id == row.id, versions.c.deleted_at.is_(None)
            )
        ).one()
        return ModelInfo(
            name=row.name,
            description=row.description,
            created_at=row.created_at,
            created_by=row.created_by,
            latest_version=live[1],
            versions=live[0],
            aliases=self._aliases(conn, row.id),
            deleted_at=row.deleted_at,
        )

    def _version_info(self, conn: Connection, name: str, row: Row[Any]) -> VersionInfo:
        alias_names = conn.execute(
            select(aliases.c.alias).where(aliases.c.version_id == row.id).order_by(aliases.c.alias)
        ).scalars()
        tags = conn.execute(
            select(version_tags.c.key, version_tags.c.value).where(
                version_tags.c.version_id == row.id
            )
        ).all()
        return VersionInfo(
            name=name,
            version=row.version,
            created_at=row.created_at,
            created_by=row.created_by,
            description=row.description,
            flavor=row.flavor,
            task=row.task,
            artifact_uri=row.artifact_uri,
            manifest_sha256=row.manifest_sha256,
            manifest=row.manifest,
            deleted_at=row.deleted_at,
            aliases=list(alias_names),
            tags={key: value for key, value in sorted(tags)},
        )

    # -- changing ----------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> VersionInfo:
        check_alias(alias)
        with self.db.write() as conn:
            model = self._lock_model(conn, name)
            row = self._resolve(conn, model, ModelRef(model.name, version=version))
            self._move_alias(conn, model.id, model.name, alias, row.id, row.version)
        return self.get_version(ModelRef(name, version=version))

    def _move_alias(
        self, conn: Connection, model_id: int, name: str, alias: str, version_id: int, number: int
    ) -> None:
        before = self._aliases(conn, model_id).get(alias)
        if before == number:
            return
        conn.execute(
            delete(aliases).where(aliases.c.model_id == model_id, aliases.c.alias == alias)
        )
        conn.execute(
            insert(aliases).values(
                model_id=model_id, alias=alias, version_id=version_id, updated_at=audit.now()
            )
        )
        audit.append(
            conn,
            self.actor,
            Action.ALIAS_SET,
            f"{name}@{alias}",
            before={"version": before},
            after={"version": number},
        )

    def remove_alias(self, name: str, alias: str) -> int:
        """Remove an alias; returns the version it pointed at."""
        with self.db.write() as conn:
            model = self._lock_model(conn, name)
            before = self._aliases(conn, model.id).get(alias)
            if before is None:
                raise AliasNotFound(f"model {model.name!r} has no alias {alias!r}")
            conn.execute(
                delete(aliases).where(aliases.c.model_id == model.id, aliases.c.alias == alias)
            )
            audit.append(
                conn,
                self.actor,
                Action.ALIAS_REMOVE,
                f"{model.name}@{alias}",
                before={"version": before},
            )
            return before

    def set_tag(self, ref: ModelRef, key: str, value: str) -> None:
        check_tag_key(key)
        with self.db.write() as conn:
            model = self._lock_model(conn, ref.name)
            row = self._resolve(conn, model, ref)
            old = _drop_tag(conn, row.id, key)
            conn.execute(insert(version_tags).values(version_id=row.id, key=key, value=value))
            if old == value:
                return
            audit.append(
                conn,
                self.actor,
                Action.TAG_SET,
                f"{model.name}:{row.version}",
                before={key: old} if old is not None else None,
                after={key: value},
            )

    def remove_tag(self, ref: ModelRef, key: str) -> None:
        with self.db.write() as conn:
            model = self._lock_model(conn, ref.name)
            row = self._resolve(conn, model, ref)
            old = _drop_tag(conn, row.id, key)
            if old is None:
                raise TagNotFound(f"version {model.name}:{row.version} has no tag {key!r}")
            audit.append(
                conn,
                self.actor,
                Action.TAG_REMOVE,
                f"{model.name}:{row.version}",
                before={key: old},
            )

    def delete_version(self, name: str, version: int) -> None:
        """Hide a version (soft delete); aliases pointing at it are removed with it."""
        with self.db.write() as conn:
            model = self._lock_model(conn, name)
            row = self._resolve(conn, model, ModelRef(model.name, version=version))
            dropped = sorted(
                conn.execute(
                    select(aliases.c.alias).where(aliases.c.version_id == row.id)
                ).scalars()
            )
            conn.execute(delete(aliases).where(aliases.c.version_id == row.id))
            conn.execute(
                update(versions).where(versions.c.id == row.id).values(deleted_at=audit.now())
            )
            audit.append(
                conn,
                self.actor,
                Action.VERSION_DELETE,
                f"{model.name}:{row.version}",
                before={"aliases": dropped, "artifact_uri": row.artifact_uri},
            )

    def delete_model(self, name: str) -> None:
        """Hide a model and all its versions (soft delete); the audit log keeps the history."""
        with self.db.write() as conn:
            model = self._lock_model(conn, name)
            before = self._aliases(conn, model.id)
            stamp = audit.now()
            conn.execute(delete(aliases).where(aliases.c.model_id == model.id))
            conn.execute(
                update(versions)
                .where(versions.c.model_id == model.id, versions.c.deleted_at.is_(None))
                .values(deleted_at=stamp)
            )
            conn.execute(update(models).where(models.c.id == model.id).values(deleted_at=stamp))
            audit.append(
                conn,
                self.actor,
                Action.MODEL_DELETE,
                model.name,
                before={"aliases": before, "last_version": model.last_version},
            )

    # -- housekeeping ------------------------------------------------------------------

    def orphans(self, min_age_s: float = 3600.0) -> list[str]:
        """Artifact folders no version points at, left by registrations that died half-way.

        Folders younger than ``min_age_s`` are left out: they may belong to a registration
        still under way in another process.
        """
        with self.db.read() as conn:
            referenced = set(conn.execute(select(versions.c.artifact_uri)).scalars())
        return self.artifacts.orphans(referenced, min_age_s)

    def remove_orphans(self, min_age_s: float = 3600.0) -> list[str]:
        removed = self.orphans(min_age_s)
        for uri in removed:
            self.artifacts.remove(uri)
        return removed


def _drop_tag(conn: Connection, version_id: int, key: str) -> str | None:
    """Delete one tag of a version; returns the value it had, if any."""
    where = (version_tags.c.version_id == version_id, version_tags.c.key == key)
    old = conn.execute(select(version_tags.c.value).where(*where)).scalar()
    if old is not None:
        conn.execute(delete(version_tags).where(*where))
    return old
