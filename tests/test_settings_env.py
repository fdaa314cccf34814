"""Configuration from the environment: typed, loud on bad values, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from telemetry_project.env import env_bool, env_float, env_int, env_list, env_secret


def test_an_integer_variable_that_is_not_an_integer_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCH", "ten")
    with pytest.raises(ImproperlyConfigured, match="BATCH='ten' is not an integer"):
        env_int("BATCH", 1)


def test_an_integer_below_its_minimum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH", "0")
    with pytest.raises(ImproperlyConfigured, match="below its minimum"):
        env_int("BATCH", 1, minimum=1)


def test_unset_variables_take_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("A_INT", "A_FLOAT", "A_BOOL", "A_LIST"):
        monkeypatch.delenv(name, raising=False)
    assert env_int("A_INT", 7) == 7
    assert env_float("A_FLOAT", 0.5) == 0.5
    assert env_bool("A_BOOL", True) is True
    assert env_list("A_LIST", ["x"]) == ["x"]


def test_a_boolean_must_be_a_recognised_word(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="not a boolean"):
        env_bool("FLAG", False)


def test_a_secret_is_read_from_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    monkeypatch.setenv("DB_PASSWORD_FILE", str(secret))
    assert env_secret("DB_PASSWORD") == "s3cret"


def test_a_secret_given_both_ways_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("a")
    monkeypatch.setenv("DB_PASSWORD", "b")
    monkeypatch.setenv("DB_PASSWORD_FILE", str(secret))
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_secret("DB_PASSWORD")


def test_a_missing_secret_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    monkeypatch.setenv("DB_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env_secret("DB_PASSWORD")
