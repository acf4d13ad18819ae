"""`relay supabase policies`: the channel policy compiled into a Supabase migration."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from app.cli import main
from core.policy import Policy
from providers.supabase.rls import MIGRATION_SUFFIX, compile_policy

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("restore_logging")

OWN_VALUES = {
    "RELAY_APP_ID": "777",
    "RELAY_APP_KEY": "cli-test-key",
    "RELAY_APP_SECRET": "cli-test-app-secret-0123456789",
    "RELAY_JWT_SECRET": "cli-test-jwt-secret-0123456789-abcdefghij",
    "RELAY_API_KEYS": "cli-test-api-key-0123456789",
}
POLICY = """
[[rule]]
pattern = "private-team-{team}"
subscribe = ["claim:teams={team}"]
client_events = ["claim:role=lead"]

[[rule]]
pattern = "{name}"
subscribe = ["anyone"]
client_events = ["anyone"]
"""


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("RELAY_"):
            monkeypatch.delenv(name)
    for name, value in OWN_VALUES.items():
        monkeypatch.setenv(name, value)


def _migrations(folder: Path) -> list[Path]:
    return sorted(folder.glob("*" + MIGRATION_SUFFIX))


def test_default_policy_is_written_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["supabase", "policies", "--out", str(tmp_path)]) == 0
    (written,) = _migrations(tmp_path)
    assert written.read_text(encoding="utf-8") == compile_policy(Policy.default()).sql
    out, err = capsys.readouterr()
    assert out.strip() == f"relay: wrote {written}"
    assert "rule #7 ({name}) can match public channels" in err
    assert main(["supabase", "policies", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"relay: unchanged {written}"
    assert _migrations(tmp_path) == [written]


def test_policy_file_from_the_option_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY, encoding="utf-8")
    out_dir = tmp_path / "migrations"
    assert (
        main(["supabase", "policies", "--policy-file", str(policy_file), "--out", str(out_dir)])
        == 0
    )
    (written,) = _migrations(out_dir)
    sql = written.read_text(encoding="utf-8")
    assert f"-- source: {policy_file}" in sql
    assert "r.jwt -> 'teams'" in sql
    err = capsys.readouterr().err
    assert "rule #1 (private-team-{team}): claim 'role'" in err
    monkeypatch.setenv("RELAY_POLICY_FILE", str(policy_file))
    assert main(["supabase", "policies", "--out", str(out_dir)]) == 0
    assert "unchanged" in capsys.readouterr().out


def test_a_broken_policy_file_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[[rule]]\npattern = "x"\nsubscribe = ["nobody"]\n', encoding="utf-8")
    code = main(["supabase", "policies", "--policy-file", str(broken), "--out", str(tmp_path)])
    assert code == 2
    assert "unknown term 'nobody'" in capsys.readouterr().err
    assert _migrations(tmp_path) == []


def test_the_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["supabase"])
    assert caught.value.code == 2
    assert "policies" in capsys.readouterr().err
