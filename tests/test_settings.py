from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import ConfigError
from modelyard.settings import Settings


def test_defaults_are_the_embedded_ones(tmp_path: Path) -> None:
    s = Settings.load()
    assert s.home == Path(".modelyard")
    assert s.resolved_database_url == f"sqlite:///{tmp_path / '.modelyard' / 'modelyard.db'}"
    assert s.resolved_artifacts_uri == str(tmp_path / ".modelyard" / "artifacts")


def test_flag_beats_env_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "modelyard.toml").write_text(
        'home = "/from/file"\nactor = "file-actor"\ndatabase_url = "sqlite:///file.db"\n'
        "[store]\nbusy_timeout_s = 3\nconnect_timeout_s = 4\n"
    )
    monkeypatch.setenv("MODELYARD_ACTOR", "env-actor")
    monkeypatch.setenv("MODELYARD_DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("MODELYARD_STORE__BUSY_TIMEOUT_S", "9")
    s = Settings.load(database_url="sqlite:///flag.db", home=None)
    assert s.database_url == "sqlite:///flag.db"  # flag
    assert s.actor == "env-actor"  # env over file
    assert s.home == Path("/from/file")  # file over default
    assert s.store.busy_timeout_s == 9  # nested env over nested file
    assert s.store.connect_timeout_s == 4  # nested file key kept beside it
    assert s.registry.sample_rows == 1000  # default


def test_config_file_can_be_named_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = tmp_path / "elsewhere.toml"
    named.write_text('artifacts_uri = "memory://bucket"\n')
    monkeypatch.setenv("MODELYARD_CONFIG", str(named))
    assert Settings.load().resolved_artifacts_uri == "memory://bucket"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"MODELYARD_CONFIG": "/no/such.toml"}, "does not exist"),
        ({"MODELYARD_STORE__BUSY_TIMEOUT_S": "soon"}, "store.busy_timeout_s"),
        ({"MODELYARD_REGISTRY__SAMPLE_ROWS": "-1"}, "registry.sample_rows"),
    ],
)
def test_bad_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, setup: dict[str, str], message: str
) -> None:
    for key, value in setup.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        Settings.load()


def test_a_config_file_that_is_not_toml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text("home = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load()


def test_an_unknown_key_in_the_config_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text('hoem = "/typo"\n')
    with pytest.raises(ConfigError, match="hoem"):
        Settings.load()
