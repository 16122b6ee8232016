"""Concurrent registrations and registrations killed half-way, in real separate processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelyard.registry import Registry
from modelyard.registry import audit as audit_log
from modelyard.settings import Settings

from .conftest import RegisterFn

pytestmark = pytest.mark.slow

_PRELUDE = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from registry.conftest import package
    from modelyard.api import open_registry
    from modelyard.registry import ArtifactStore, Registry
    from modelyard.settings import Settings

    settings = Settings.model_validate_json({settings!r})
    work = Path({work!r})
    """
)


def _script(settings: Settings, work: Path, body: str) -> str:
    tests = str(Path(__file__).resolve().parent.parent)
    prelude = _PRELUDE.format(tests=tests, settings=settings.model_dump_json(), work=str(work))
    return prelude + textwrap.dedent(body)


def _run(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_processes_registering_at_once_get_distinct_consecutive_versions(
    settings: Settings, registry: Registry, tmp_path: Path
) -> None:
    per_process = 8
    go = tmp_path / "go"
    body = f"""
        registry = open_registry(settings)
        deadline = time.monotonic() + 30
        while not Path({str(go)!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        got = []
        for i in range({per_process}):
            folder = work / f"{{os.getpid()}}-{{i}}"
            manifest, digest = package(folder, "churn")
            got.append(registry.create_version(folder, manifest, digest).version)
        print(",".join(map(str, got)))
    """
    workers = [_run(_script(settings, tmp_path / f"w{i}", body)) for i in range(2)]
    time.sleep(1.0)  # both imported and waiting at the barrier
    go.touch()
    numbers: list[int] = []
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        got = [int(n) for n in out.strip().split(",")]
        assert got == sorted(got)  # each process sees its own numbers increase
        numbers += got
    assert sorted(numbers) == list(range(1, 2 * per_process + 1))
    assert [v.version for v in registry.list_versions("churn")] == sorted(numbers)
    with registry.db.read() as conn:
        check = audit_log.verify(conn)
    assert check.ok
    assert check.entries == 1 + 2 * per_process  # model.create once, then every version


@pytest.mark.parametrize("where", ["after_artifact_copy", "mid_copy", "inside_db_transaction"])
def test_a_registration_killed_half_way_leaves_no_visible_version(
    settings: Settings, registry: Registry, add_version: RegisterFn, tmp_path: Path, where: str
) -> None:
    add_version("churn")
    body = f"""
        where = {where!r}

        class DyingStore(ArtifactStore):
            def put(self, model_name, source):
                if where == "mid_copy":
                    staging = f"{{self.root}}/.staging/half"
                    self.fs.makedirs(staging, exist_ok=True)
                    self.fs.put(str(source / "modelyard.yaml"), staging + "/modelyard.yaml")
                    os.kill(os.getpid(), signal.SIGKILL)
                uri = super().put(model_name, source)
                if where == "after_artifact_copy":
                    os.kill(os.getpid(), signal.SIGKILL)
                return uri

        base = open_registry(settings)
        registry = Registry(base.db, DyingStore(base.artifacts.uri), "tester")
        if where == "inside_db_transaction":
            from sqlalchemy import event

            @event.listens_for(base.db.engine, "before_cursor_execute")
            def die(conn, cursor, statement, params, context, executemany):
                if statement.lstrip().upper().startswith("INSERT INTO MODEL_VERSIONS"):
                    os.kill(os.getpid(), signal.SIGKILL)

        manifest, digest = package(work / "pkg", "churn")
        registry.create_version(work / "pkg", manifest, digest)
        print("not killed")
    """
    proc = _run(_script(settings, tmp_path / "crash", body))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, (out, err)

    assert [v.version for v in registry.list_versions("churn")] == [1]
    assert registry.get_version("churn").version == 1
    assert add_version("churn").version == 2
    with registry.db.read() as conn:
        assert audit_log.verify(conn).ok
    assert len(registry.orphans(min_age_s=0)) == 1  # the half-written folder, found by gc
    registry.remove_orphans(min_age_s=0)
    assert [v.version for v in registry.list_versions("churn")] == [1, 2]
    assert all(registry.artifacts.open_dir(v.artifact_uri).is_dir()
               for v in registry.list_versions("churn"))

