"""Connections to the registry database: SQLite (embedded default, WAL) or PostgreSQL.

Writers are serialised where it matters: on SQLite a write transaction starts with
``BEGIN IMMEDIATE`` (waiting up to ``busy_timeout_s`` for another writer), on PostgreSQL the
registry takes row locks (``SELECT … FOR UPDATE``). Opening a database applies pending Alembic
migrations under a lock, and refuses a database migrated by a newer modelyard.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from modelyard.errors import DatabaseUnavailable, SchemaMismatch, first_line
from modelyard.settings import StoreSettings

_WRITE = "modelyard_write"
_MIGRATION_LOCK_KEY = 0x6D6F64656C  # pg_advisory_xact_lock key for schema upgrades


class Database:
    """An engine plus the two ways the registry uses it: ``read()`` and ``write()``."""

    def __init__(self, url: str, settings: StoreSettings | None = None) -> None:
        self.settings = settings or StoreSettings()
        self.url = url
        self.engine = _create_engine(url, self.settings)
        self.dialect = self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with _translate_errors(self.url), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; on SQLite it holds the database write lock from the start."""
        with _translate_errors(self.url), self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def migrate(self, upgrade: bool = True) -> None:
        """Bring the schema to this modelyard's head revision, or refuse a newer one.

        With ``upgrade=False`` an older schema is refused too, for deployments whose
        operators apply migrations themselves.
        """
        config = Config()
        config.set_main_option("script_location", str(_migrations_dir()))
        script = ScriptDirectory.from_config(config)
        head = script.get_current_head()
        with self.write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            current = MigrationContext.configure(conn).get_current_heads()
            known = {rev.revision for rev in script.walk_revisions()}
            unknown = [rev for rev in current if rev not in known]
            if unknown:
                raise SchemaMismatch(
                    f"the database at {display_url(self.url)} has schema revision "
                    f"{', '.join(unknown)}, newer than this modelyard knows (up to {head}); "
                    "upgrade modelyard to use it"
                )
            if tuple(current) != (head,):
                if not upgrade:
                    raise SchemaMismatch(
                        f"the database at {display_url(self.url)} has schema revision "
                        f"{', '.join(current) or 'none'}, this modelyard needs {head}; "
                        "set MODELYARD_STORE__MIGRATE_ON_START=true to upgrade it"
                    )
                config.attributes["connection"] = conn
                command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _json_text(value: Any) -> str:
    """JSON columns through orjson: ~17x faster than ``json.dumps`` on a logged request (the
    prediction log's hot loop), numpy values written as they are, NaN and ±inf as null (valid
    JSON for PostgreSQL, where ``json.dumps`` would write NaN)."""
    return orjson.dumps(value, option=_JSON_OPTIONS).decode()


def _json_value(stored: Any) -> Any:
    """The stored JSON text as a value; SQLite hands a bare number back as a number."""
    return orjson.loads(stored) if isinstance(stored, str | bytes) else stored


def _migrations_dir() -> Path:
    return Path(str(files("modelyard.store") / "migrations"))


def _create_engine(url: str, settings: StoreSettings) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(
            f"database URL {url!r} is malformed; expected e.g. sqlite:///path/modelyard.db "
            "or postgresql+psycopg://user@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseUnavailable(
            f"database {display_url(url)} is not supported; use SQLite or PostgreSQL"
        )
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = settings.busy_timeout_s
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        connect_args["connect_timeout"] = max(1, round(settings.connect_timeout_s))
    try:
        engine = create_engine(parsed, connect_args=connect_args, pool_pre_ping=True,
                               json_serializer=_json_text, json_deserializer=_json_value)
    except NoSuchModuleError:
        raise DatabaseUnavailable(
            f"database URL {display_url(url)} names an unknown driver; "
            "use sqlite:/// or postgresql+psycopg://"
        ) from None
    except ImportError as exc:
        raise DatabaseUnavailable(
            f"the driver for {display_url(url)} is not installed ({exc.name}); "
            "for PostgreSQL: pip install 'modelyard[postgres]'"
        ) from None
    if backend == "sqlite":
        _configure_sqlite(engine, settings)
    return engine


_PAGE_SIZE = 16_384  # bytes a page of a new SQLite store (see _configure_sqlite)


def _configure_sqlite(engine: Engine, settings: StoreSettings) -> None:
    busy_ms = int(settings.busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        # A new file's pages (ignored by one that has any): 16 KB rather than SQLite's 4 KB. The
        # prediction log writes one blob a batch (hundreds of KB) and an index row a request;
        # larger pages take a quarter of the overflow pages, WAL frames and checkpoints (each
        # an fsync) for the same bytes. On the peer bench's MLP at c=16 the server answered
        # 2.1% more requests a second (12 alternating rounds; benchmarks/RESULTS.md).
        cursor.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def _translate_errors(url: str) -> Iterator[None]:
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_connect_error(exc):
            reason = first_line(str(exc.orig if exc.orig is not None else exc))
            raise DatabaseUnavailable(
                f"cannot use the database at {display_url(url)}: {reason}"
            ) from None
        raise


def _is_connect_error(exc: DBAPIError) -> bool:
    name = type(exc.orig).__name__
    message = str(exc.orig).lower()
    return name in ("OperationalError", "InterfaceError") and any(
        hint in message
        for hint in (
            "connection",
            "connect",
            "could not translate host",
            "does not exist",
            "unable to open database",
            "database is locked",
            "authentication",
            "password",
        )
    )
