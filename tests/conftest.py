"""Shared by every suite: a secret scanner over everything the test session logged.

Secrets must never reach a log line or a trace (ARCHITECTURE.md, "Errors"). During the whole
session a handler on the root logger sees every log record of this process, and at the end of the
session every `*.log` file under the session's pytest temporary directory is read too: that is where
the subprocesses of the end-to-end suites (RelayProcess, SoketiProcess, ...) write their output,
since every test hands them a `tmp_path` log file. If a configured secret or a JWT appears in any of
them, the session ends with an error naming where it appeared and which secret it was (never its
value).

What is looked for:

* every secret listed in SECRET_SOURCES below: the one place that says where the secrets the tests
  configure live. A source is read only when its module was imported during the session (the
  secrets of a suite that did not run cannot have leaked); a listed name that no longer resolves is
  itself an error, so the list cannot rot silently. Add your module here when it configures a
  secret (an app secret, a JWT secret, an API key, a service key...); public values (app keys, key
  names, anon keys) do not belong here.
* anything shaped like a JWT (`eyJ...` `.` `eyJ...` `.` ...): tokens are credentials too. The
  relay's access log leaves query strings out for this reason.

One exemption, in this process only: records of the test side's own HTTP/WebSocket clients and of
the unit suite's uvicorn access log (CLIENT_LOGGERS). They log the URLs the tests build, and some
tests put a credential in a URL on purpose (a forgery test sends the right API key in the query
string to check it is refused). The relay's own outbound requests log through the same `httpx`
logger, so they are checked where they can be told apart: in the subprocess logs, where nothing is
exempt (`relay serve` turns uvicorn's access log off; httpx lines there are the relay's own).

Values shorter than MIN_SECRET_LENGTH characters are ignored: they would match by accident.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from pathlib import Path

# module -> paths of its secret values. A path is an attribute, then `.key` per mapping item
# (`UNIT_SETTINGS.app_secret`); a comma-separated value (RELAY_API_KEYS) counts as several
# secrets; a `!after-colon` suffix keeps what follows the last ":" (an Ably key `name:secret`).
SECRET_SOURCES: Final[Mapping[str, tuple[str, ...]]] = {
    "core.settings": ("DEV_APP_SECRET", "DEV_JWT_SECRET", "DEV_API_KEY"),
    "tests.unit.conftest": (
        "UNIT_SETTINGS.app_secret",
        "UNIT_SETTINGS.jwt_secret",
        "UNIT_SETTINGS.api_keys",
    ),
    "tests.unit.app.test_cli": ("APP_SECRET", "JWT_SECRET", "API_KEY", "ABLY_KEY", "SUPABASE_KEY"),
    "tests.unit.core.test_identity": ("SECRET", "OTHER_SECRET", "API_KEY", "OTHER_API_KEY"),
    "tests.unit.core.test_tokens": ("SECRET",),
    "tests.unit.providers.pusherproto.test_signing": ("SECRET", "DOC_SECRET"),
    "tests.unit.providers.pusher.test_api": ("SECRET", "MASTER_KEY_BASE64"),
    "tests.unit.app.test_secondary": ("APP_SECRET", "API_KEY"),
    "tests.e2e.test_secondary_provider": ("PUSHER_SECRET",),
    "tests.unit.providers.pusher.test_known_answers": ("SECRET", "DOC_SECRET", "MASTER_KEY_BASE64"),
    "tests.unit.providers.pusherproto.test_encryption": ("APP_SECRET", "MASTER_KEY_BASE64"),
    "tests.unit.providers.ably.test_provider": ("SECRET",),
    "tests.unit.providers.ably.test_webhooks": ("SECRET",),
    "tests.unit.providers.ably.test_token": ("SECRET",),
    "tests.unit.providers.ably.test_settings": ("SECRET",),
    "tests.unit.providers.supabase.test_tokens": ("SECRET",),
    "tests.unit.providers.supabase.test_provider": ("SECRET", "SERVICE_KEY"),
    "tests.unit.providers.supabase.test_settings": ("SECRET", "KEY"),
    "tests.unit.app.test_lambda_handler": ("APP_SECRET", "JWT_SECRET", "API_KEY"),
    "tests.unit.core.test_idempotency": ("OTHER_API_KEY",),
    "tests.unit.core.test_ratelimit": ("OTHER_KEY",),
    "tests.contract.test_ably_rest_contract": ("KEY!after-colon",),
    "tests.contract.test_supabase_broadcast_contract": ("SERVICE_KEY", "JWT_SECRET"),
    "tests.contract.test_appsync_lambda_contract": ("API_KEY", "JWT_SECRET"),
    "tests.contract.test_appsync_publish_contract": ("AWS_SECRET",),
    "tests.unit.providers.appsync.test_provider": ("AWS_SECRET",),
    "tests.unit.providers.appsync.test_authorizer": ("JWT_SECRET",),
    "tests.db.test_supabase_rls": ("SECRET",),
    "tests.integration.conftest": ("AWS_ENV.AWS_SECRET_ACCESS_KEY",),
    "tests.fuzz.test_openapi_fuzz": ("API_KEY",),
    "tests.security.conftest": (
        "APP_SECRET",
        "JWT_SECRET",
        "API_KEY",
        "PUSHER_SECRET",
        "ABLY_SECRET",
        "SUPABASE_JWT_SECRET",
        "SUPABASE_SERVICE_KEY",
    ),
    "tests.security.test_idempotency_unknown_outcome": ("API_KEY", "JWT_SECRET", "PUSHER_SECRET"),
    "tests.security.test_idempotency_isolation": ("API_KEY", "OTHER_API_KEY", "JWT_SECRET"),
    "tests.security.relay_server": ("API_KEY", "SETTINGS.app_secret", "SETTINGS.jwt_secret"),
    "tests.e2e.conftest": ("APP_SECRET", "JWT_SECRET", "API_KEY"),
    "tests.e2e.test_pusher_soketi": ("PUSHER_SECRET", "MASTER_KEY_BASE64"),
    "tests.e2e.test_history_soketi": ("PUSHER_SECRET",),
    "tests.e2e.test_encrypted_channels": ("MASTER_KEY_BASE64",),
    "tests.e2e.test_supabase_js": ("SUPABASE_SECRET", "SERVICE_KEY"),
    "tests.e2e.test_ably_js": ("SECRET",),
    "tests.e2e.test_fault_injection": ("PUSHER_SECRET",),
    "tests.e2e.test_load_without_loss": ("PUSHER_SECRET",),
    "tests.e2e.apigw_support": ("APP_SECRET", "JWT_SECRET", "API_KEY"),
    "infra.offline_endpoints": ("APP_SECRET", "JWT_SECRET", "API_KEY"),
    "tests.e2e.test_check_live": ("SECRET",),
    "tests.unit.core.webhooks.receiver": ("APP_SECRET", "WEBHOOK_SECRET"),
    "tests.unit.app.test_webhooks": ("PUSHER_SECRET",),
}
MIN_SECRET_LENGTH: Final = 8
JWT_SHAPE: Final = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
CLIENT_LOGGERS: Final = ("httpx", "httpcore", "uvicorn.access", "websockets.client")
LOG_FILE_GLOB: Final = "*.log"


class SecretSourceError(LookupError):
    """A SECRET_SOURCES entry that does not resolve to a string any more."""


def resolve_secrets(
    sources: Mapping[str, Iterable[str]], modules: Mapping[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """label -> secret value for the sources whose module is in `modules` (imported), and the
    entries that do not resolve."""
    found: dict[str, str] = {}
    problems: list[str] = []
    for module_name, paths in sources.items():
        module = modules.get(module_name)
        if module is None:
            continue
        for path in paths:
            label = f"{module_name}.{path}"
            try:
                values = _values(module, path, label)
            except SecretSourceError as exc:
                problems.append(str(exc))
                continue
            for index, value in enumerate(values):
                if len(value) >= MIN_SECRET_LENGTH:
                    found[label if index == 0 else f"{label}[{index}]"] = value
    return found, problems


def _values(module: object, path: str, label: str) -> list[str]:
    path, _, suffix = path.partition("!")
    name, *keys = path.split(".")
    try:
        value: Any = getattr(module, name)
        for key in keys:
            value = value[key]
    except (AttributeError, KeyError, TypeError) as exc:
        raise SecretSourceError(f"SECRET_SOURCES: {label} does not resolve ({exc!r})") from exc
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if not isinstance(value, str):
        raise SecretSourceError(f"SECRET_SOURCES: {label} is a {type(value).__name__}, not str")
    if suffix == "after-colon":
        return [value.rpartition(":")[2]]
    if suffix:
        raise SecretSourceError(f"SECRET_SOURCES: {label}: unknown suffix !{suffix}")
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass(frozen=True, slots=True)
class Leak:
    """Where a secret showed up, and which (by label: the value is never repeated)."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(slots=True)
class SecretScanner:
    """Finds secrets (by value) and JWTs in log records and log files."""

    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # never printed
    leaks: list[Leak] = field(default_factory=list)
    records_seen: int = 0
    context: str = ""  # the test running now, named in the leaks found in records

    def scan_text(self, text: str, where: str) -> list[Leak]:
        """The leaks in one piece of text (also remembered in `leaks`)."""
        found = [Leak(where, label) for label, value in self.secrets.items() if value in text]
        if JWT_SHAPE.search(text):
            found.append(Leak(where, "a JWT"))
        self.leaks.extend(found)
        return found

    def scan_record(self, record: logging.LogRecord) -> list[Leak]:
        """The leaks in a log record: its message, its exception and its stack."""
        self.records_seen += 1
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: scan what it was made of
            text = f"{record.msg} {record.args}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        if record.name.startswith(CLIENT_LOGGERS):
            return []
        where = f"log record of {record.name!r}" + (
            f" during {self.context}" if self.context else ""
        )
        return self.scan_text(text, where)

    def scan_files(self, folder: Path) -> list[Leak]:
        """The leaks in every log file under `folder`, line by line."""
        found: list[Leak] = []
        for path in sorted(folder.rglob(LOG_FILE_GLOB)):
            if not path.is_file():
                continue
            text = path.read_text(errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                found += self.scan_text(line, f"{path}:{number}")
        return found


class ScanningHandler(logging.Handler):
    """A root handler feeding every record to a scanner.

    The secrets are known only once the test modules are imported: records that come earlier wait
    in `pending` until `arm()`."""

    def __init__(self, scanner: SecretScanner) -> None:
        super().__init__(logging.NOTSET)
        self.scanner = scanner
        self.armed = False
        self.pending: list[logging.LogRecord] = []

    def arm(self, secrets: Mapping[str, str]) -> None:
        """Start scanning, with these secrets, the records so far and every later one."""
        self.scanner.secrets.update(secrets)
        self.armed = True
        pending, self.pending = self.pending, []
        for record in pending:
            self.scanner.scan_record(record)

    def emit(self, record: logging.LogRecord) -> None:
        if self.armed:
            self.scanner.scan_record(record)
        else:
            self.pending.append(record)


SCANNER: Final = SecretScanner()
_HANDLER: Final = ScanningHandler(SCANNER)


def _attach() -> None:
    """Put the handler on the root logger (again: `relay` CLI tests replace the root handlers)."""
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)  # what the relay logs by default (RELAY_LOG_LEVEL=INFO)
    for name in ("app", "providers"):  # the relay's own loggers: everything, debug included
        logging.getLogger(name).setLevel(logging.DEBUG)


def pytest_configure(config: pytest.Config) -> None:
    _attach()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _attach()
    SCANNER.context = item.nodeid
    try:
        return (yield)
    finally:
        _attach()
        SCANNER.context = ""


@pytest.fixture(scope="session", autouse=True)
def _secret_scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretScanner]:
    """Arms the scanner; after the last test (and every other session fixture: this one is set
    up first, so torn down last), scans the log files and fails the session on any leak."""
    secrets, _ = resolve_secrets(SECRET_SOURCES, sys.modules)
    _HANDLER.arm(secrets)
    yield SCANNER
    secrets, problems = resolve_secrets(SECRET_SOURCES, sys.modules)  # with modules imported since
    _HANDLER.arm(secrets)
    SCANNER.scan_files(tmp_path_factory.getbasetemp())
    leaks = list(dict.fromkeys(str(leak) for leak in SCANNER.leaks))
    if leaks or problems:
        lines = [*problems, *(f"secret in a log: {leak}" for leak in leaks[:50])]
        pytest.fail("secret scanner (tests/conftest.py):\n" + "\n".join(lines), pytrace=False)


@pytest.fixture
def secret_scanner() -> SecretScanner:
    """The session's scanner (for tests that check it sees what they log)."""
    return SCANNER
