"""The session's secret scanner (tests/conftest.py) finds what it must, and the relay's own access
log gives it nothing to find.

Planted secrets here go only to private, non-propagating loggers and to a temporary directory
outside pytest's: the session scanner must not see them (it would fail the session, rightly).
"""

from __future__ import annotations

import ast
import logging
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import SecretStr

from app.main import create_app
from tests.conftest import (
    CLIENT_LOGGERS,
    SECRET_SOURCES,
    ScanningHandler,
    SecretScanner,
    resolve_secrets,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from starlette.types import ASGIApp, Receive, Scope, Send

    from core.settings import Settings

PLANTED_SECRET = "planted-secret-value-0123456789"  # a test value, never configured
PLANTED_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXBsYW50ZWQ"


@pytest.fixture
def private_logger() -> Iterator[tuple[logging.Logger, SecretScanner]]:
    """A logger whose records reach only a scanner of its own (never the session's)."""
    logger = logging.getLogger(f"tests.planted.{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    scanner = SecretScanner()
    handler = ScanningHandler(scanner)
    handler.arm({"planted": PLANTED_SECRET})
    logger.addHandler(handler)
    try:
        yield logger, scanner
    finally:
        logger.removeHandler(handler)


def test_a_secret_in_a_message_is_found_by_label(
    private_logger: tuple[logging.Logger, SecretScanner],
) -> None:
    logger, scanner = private_logger
    logger.info("all good")
    assert scanner.leaks == []
    logger.warning("connecting with %s", PLANTED_SECRET)
    assert [leak.what for leak in scanner.leaks] == ["planted"]
    assert PLANTED_SECRET not in str(scanner.leaks[0])  # the report names it, never shows it
    assert PLANTED_SECRET not in repr(scanner)


def test_a_secret_in_a_trace_is_found(private_logger: tuple[logging.Logger, SecretScanner]) -> None:
    logger, scanner = private_logger
    try:
        raise ValueError(f"bad key {PLANTED_SECRET}")
    except ValueError:
        logger.exception("failed")  # the message is clean, the trace is not
    assert [leak.what for leak in scanner.leaks] == ["planted"]


def test_records_before_arming_are_scanned_when_armed() -> None:
    logger = logging.getLogger("tests.planted.early")
    logger.propagate = False
    scanner = SecretScanner()
    handler = ScanningHandler(scanner)
    logger.addHandler(handler)
    try:
        logger.warning("early %s", PLANTED_SECRET)
        assert scanner.leaks == []
        handler.arm({"planted": PLANTED_SECRET})
        assert [leak.what for leak in scanner.leaks] == ["planted"]
    finally:
        logger.removeHandler(handler)


def test_jwts_are_found_but_test_clients_own_request_logs_are_exempt() -> None:
    scanner = SecretScanner(secrets={"planted": PLANTED_SECRET})
    relay = logging.LogRecord("app.access", logging.INFO, __file__, 1, "%s", (PLANTED_JWT,), None)
    assert [leak.what for leak in scanner.scan_record(relay)] == ["a JWT"]
    for name in CLIENT_LOGGERS:
        client = logging.LogRecord(
            name, logging.INFO, __file__, 1, "GET /?t=%s&k=%s", (PLANTED_JWT, PLANTED_SECRET), None
        )
        assert scanner.scan_record(client) == []
    # ... in this process only: the same line in a subprocess's log file is a leak.
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "relay.log").write_text(f"httpx: GET /?k={PLANTED_SECRET}\n")
        assert [leak.what for leak in scanner.scan_files(Path(folder))] == ["planted"]


def test_log_files_are_scanned_line_by_line() -> None:
    scanner = SecretScanner(secrets={"planted": PLANTED_SECRET})
    with tempfile.TemporaryDirectory() as folder:
        nested = Path(folder) / "relay"
        nested.mkdir()
        (nested / "relay.log").write_text(
            f"started\nGET /x?token={PLANTED_JWT}\nkey {PLANTED_SECRET}\n"
        )
        (nested / "notes.txt").write_text(PLANTED_SECRET)  # not a log file
        leaks = scanner.scan_files(Path(folder))
    assert [(leak.where.rsplit(":", 1)[1], leak.what) for leak in leaks] == [
        ("2", "a JWT"),
        ("3", "planted"),
    ]


def test_secrets_resolve_from_modules() -> None:
    module = SimpleNamespace(
        SECRET="module-secret-0123",
        SETTINGS={"api_keys": "key-one-0123456789, key-two-0123456789", "nested": {"s": "x" * 9}},
        KEY="name.id:after-colon-secret",
        WRAPPED=SecretStr("wrapped-secret-0123"),
        SHORT="short",
        NUMBER=5,
    )
    sources = {
        "m": (
            "SECRET",
            "SETTINGS.api_keys",
            "SETTINGS.nested.s",
            "KEY!after-colon",
            "WRAPPED",
            "SHORT",
            "MISSING",
            "NUMBER",
        ),
        "not.imported": ("ANYTHING",),
    }
    found, problems = resolve_secrets(sources, {"m": module})
    assert found == {
        "m.SECRET": "module-secret-0123",
        "m.SETTINGS.api_keys": "key-one-0123456789",
        "m.SETTINGS.api_keys[1]": "key-two-0123456789",
        "m.SETTINGS.nested.s": "x" * 9,
        "m.KEY!after-colon": "after-colon-secret",
        "m.WRAPPED": "wrapped-secret-0123",
    }
    assert len(problems) == 2
    assert "m.MISSING does not resolve" in problems[0]
    assert "m.NUMBER is a int" in problems[1]


SECRET_NAME = re.compile(r"^(?:[A-Z0-9]+_)*(?:SECRET|API_KEY|SERVICE_KEY)$")
NOT_CONFIGURED = {"tests.unit.test_secret_scanner.PLANTED_SECRET"}


def test_every_secret_constant_of_the_tests_is_listed() -> None:
    """A module-level constant named like a secret (APP_SECRET, JWT_SECRET, API_KEY, ...) in any
    test module must be in SECRET_SOURCES, so the scanner looks for it."""
    tests = Path(__file__).resolve().parents[1]
    missing = []
    for path in sorted(tests.rglob("*.py")):
        module = ".".join(path.relative_to(tests.parent).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            target = node.targets[0] if isinstance(node, ast.Assign) else None
            if isinstance(node, ast.AnnAssign):
                target = node.target
            value = getattr(node, "value", None)
            if not (isinstance(target, ast.Name) and SECRET_NAME.match(target.id)):
                continue
            if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
                continue
            label = f"{module}.{target.id}"
            if label not in NOT_CONFIGURED and target.id not in SECRET_SOURCES.get(module, ()):
                missing.append(label)
    assert missing == [], "add these to SECRET_SOURCES in tests/conftest.py"


def test_every_listed_source_of_an_imported_module_resolves() -> None:
    import sys

    found, problems = resolve_secrets(SECRET_SOURCES, sys.modules)
    assert problems == []
    assert "tests.unit.conftest.UNIT_SETTINGS.app_secret" in found
    assert "core.settings.DEV_JWT_SECRET" in found


# --- the relay's access log against the scanner -------------------------------------------------


class LeakyAccessLog:
    """What the relay's access log must not be: one that prints the query string."""

    def __init__(self, app: ASGIApp, logger: logging.Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"").decode()
        self.logger.info("%s %s?%s", scope.get("method"), scope["path"], query)
        await self.app(scope, receive, send)


async def _get_with_credentials(app: Any, token: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        return await client.get(
            "/v1/stream",
            params={"channel": "bad channel!", "token": token, "key": PLANTED_SECRET},
        )


async def test_a_leaky_access_log_would_be_caught(
    relay_settings: Settings,
    relay_token: Callable[..., str],
    private_logger: tuple[logging.Logger, SecretScanner],
) -> None:
    logger, scanner = private_logger
    leaky = LeakyAccessLog(create_app(relay_settings), logger)
    await _get_with_credentials(leaky, relay_token("alice"))
    assert sorted(leak.what for leak in scanner.leaks) == ["a JWT", "planted"]


async def test_the_relays_access_log_leaves_credentials_out(
    relay_settings: Settings,
    relay_token: Callable[..., str],
    private_logger: tuple[logging.Logger, SecretScanner],
    monkeypatch: pytest.MonkeyPatch,
    secret_scanner: SecretScanner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The same request through the real access log (Front), logging to the private scanner...
    logger, scanner = private_logger
    with monkeypatch.context() as patched:
        patched.setattr("app.middleware.access_log", logger)
        response = await _get_with_credentials(create_app(relay_settings), relay_token("alice"))
    assert response.status_code == 400
    assert scanner.records_seen == 1
    assert scanner.leaks == []
    # ... and through the session's scanner, which sees the real logger's line.
    seen, leaks = secret_scanner.records_seen, len(secret_scanner.leaks)
    with caplog.at_level(logging.INFO, logger="app.access"):
        await _get_with_credentials(create_app(relay_settings), relay_token("alice"))
    assert any(r.name == "app.access" and "/v1/stream" in r.getMessage() for r in caplog.records)
    assert secret_scanner.records_seen > seen
    assert len(secret_scanner.leaks) == leaks
