"""EnvSettings: fields from prefixed variables or aliases; keywords win; errors name variables."""

from __future__ import annotations

import os

import pytest
from pydantic import AliasChoices, Field

from core.envsettings import EnvSettings
from core.errors import ConfigurationError
from core.settings import read_env


class Sample(EnvSettings):
    env_prefix = "SAMPLE_"

    size: int = Field(default=1, ge=1)
    name: str = "default"
    region: str = Field(default="none", validation_alias=AliasChoices("SAMPLE_REGION", "AWS_X"))
    count: int = Field(default=0, validation_alias=AliasChoices("SAMPLE_COUNT", "AWS_N"))


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in list(os.environ):
        if variable.upper().startswith(("SAMPLE_", "AWS_X", "AWS_N")):
            monkeypatch.delenv(variable)


def test_defaults_without_variables() -> None:
    assert (Sample().size, Sample().name, Sample().region) == (1, "default", "none")


def test_prefixed_variables_are_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_SIZE", "7")
    monkeypatch.setenv("sample_name", "lower")
    assert (Sample().size, Sample().name) == (7, "lower")


def test_aliases_in_order_and_no_prefixed_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_X", "second")
    assert Sample().region == "second"
    monkeypatch.setenv("SAMPLE_REGION", "first")
    assert Sample().region == "first"


def test_keywords_win_over_variables_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_SIZE", "7")
    monkeypatch.setenv("AWS_X", "env")
    made = Sample(size=3, region="given")
    assert (made.size, made.region) == (3, "given")


def test_other_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_UNKNOWN", "x")
    monkeypatch.setenv("SIZE", "9")
    assert Sample().size == 1


@pytest.mark.parametrize(
    ("variable", "value"), [("SAMPLE_SIZE", "0"), ("SAMPLE_SIZE", "many"), ("AWS_N", "lots")]
)
def test_errors_name_the_variable_never_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        read_env(Sample)
    named, _, why = str(caught.value).partition(": ")
    assert named == variable
    assert why
    assert value not in why


class Credentials(EnvSettings):
    env_prefix = "SAMPLE_"

    app_id: str = Field(pattern=r"^[0-9]+$")
    key: str
    secret: str
    size: int = Field(default=1, le=10)


def test_every_problem_at_once_the_unset_variables_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SAMPLE_SIZE", "11")
    with pytest.raises(ConfigurationError) as caught:
        read_env(Credentials)
    assert caught.value.problems == (
        "SAMPLE_APP_ID, SAMPLE_KEY, SAMPLE_SECRET: required, not set",
        "SAMPLE_SIZE: must be at most 10",
    )


def test_a_pattern_without_a_description_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_APP_ID", "abc")
    monkeypatch.setenv("SAMPLE_KEY", "k")
    monkeypatch.setenv("SAMPLE_SECRET", "s")
    with pytest.raises(ConfigurationError) as caught:
        read_env(Credentials)
    assert caught.value.problems == ("SAMPLE_APP_ID: must match ^[0-9]+$",)
