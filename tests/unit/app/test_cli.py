"""The `relay` command, run in-process through app.cli.main (no server is started here)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import jwt
import orjson
import pytest
import respx
from moto import mock_aws

from app.cli import banner, main
from core.errors import InvalidToken
from core.identity import Authenticator
from core.settings import Settings, load_settings
from tests.e2e.apigw_support import aws_environment, deploy_infra

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.usefixtures("restore_logging")

APP_SECRET = "cli-test-app-secret-0123456789"
JWT_SECRET = "cli-test-jwt-secret-0123456789-abcdefghij"
API_KEY = "cli-test-api-key-0123456789"
# Own values for every development default, so no warning line lands on stderr.
OWN_VALUES = {
    "RELAY_APP_ID": "777",
    "RELAY_APP_KEY": "cli-test-key",
    "RELAY_APP_SECRET": APP_SECRET,
    "RELAY_JWT_SECRET": JWT_SECRET,
    "RELAY_API_KEYS": API_KEY,
}
SECRETS = (APP_SECRET, JWT_SECRET, API_KEY)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("RELAY_", "PUSHER_", "ABLY_", "SUPABASE_", "APIGW_")):
            monkeypatch.delenv(name)
    for name, value in OWN_VALUES.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    for secret in SECRETS:
        assert secret not in text
    return lines[0]


# --- token -------------------------------------------------------------------------------------


async def test_token_is_accepted_by_the_authenticator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--user", "42", "--name", "Ann"]) == 0
    captured = capsys.readouterr()
    token = _one_line(captured.out)
    assert captured.err == ""
    authenticator = Authenticator(load_settings())
    try:
        principal = await authenticator.verify_jwt(token)
    finally:
        await authenticator.aclose()
    assert principal.is_user
    assert principal.id == "42"
    assert principal.claims["sub"] == "42"
    assert principal.claims["name"] == "Ann"
    assert principal.claims["exp"] - principal.claims["iat"] == 3600


async def test_token_honours_ttl_issuer_and_audience(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELAY_JWT_ISSUER", "https://issuer.example")
    monkeypatch.setenv("RELAY_JWT_AUDIENCE", "relay")
    assert main(["token", "--user", "ann", "--ttl", "120"]) == 0
    token = _one_line(capsys.readouterr().out)
    authenticator = Authenticator(load_settings())
    principal = await authenticator.verify_jwt(token)
    assert principal.id == "ann"
    assert "name" not in principal.claims
    assert principal.claims["iss"] == "https://issuer.example"
    assert principal.claims["aud"] == "relay"
    assert principal.claims["exp"] - principal.claims["iat"] == 120


async def test_token_from_another_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--user", "42"]) == 0
    token = capsys.readouterr().out.strip()
    monkeypatch.setenv("RELAY_JWT_SECRET", "a-different-jwt-secret-0123456789-abcdef")
    with pytest.raises(InvalidToken):
        await Authenticator(load_settings()).verify_jwt(token)


def test_token_carries_a_watchlist(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--user", "ann", "--watch", "bob", "--watch", "7"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), JWT_SECRET, algorithms=["HS256"])
    assert claims["watchlist"] == ["bob", "7"]
    assert main(["token", "--user", "ann"]) == 0
    assert "watchlist" not in jwt.decode(
        capsys.readouterr().out.strip(), JWT_SECRET, algorithms=["HS256"]
    )


def test_token_is_signed_hs256_with_the_jwt_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--user", "42"]) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.decode(token, JWT_SECRET, algorithms=["HS256"])["sub"] == "42"


def test_token_needs_a_user(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["token"])
    assert caught.value.code == 2
    assert "--user" in capsys.readouterr().err


def test_token_without_jwt_secret_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELAY_JWT_SECRET", "")
    monkeypatch.setenv("RELAY_JWKS_URL", "https://id.example/.well-known/jwks.json")
    assert main(["token", "--user", "42"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "RELAY_JWT_SECRET" in _one_line(captured.err)


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "--user", "42", "--ttl", "0"],
        ["token", "--user", "42", "--ttl", "999999"],
        ["token", "--user", ""],
        ["policy", "explain", "news", "--user", "1", "--claim", "role"],
    ],
)
def test_bad_arguments_give_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) in (1, 2)
    _one_line(capsys.readouterr().err)


# --- policy explain ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (
            ["private-user-42", "--user", "42"],
            0,
            ["matched rule #1 private-user-{id}", "id='42'", "ALLOW", "user:{id}"],
        ),
        (
            ["private-user-42", "--user", "7"],
            1,
            ["matched rule #1 private-user-{id}", "DENY (403)", "user '7' is not '42'"],
        ),
        (
            ["news", "--backend", "--action", "publish"],
            0,
            ["{name}", "name='news'", "ALLOW", "backend"],
        ),
        (
            ["news", "--user", "42", "--action", "publish"],
            1,
            ["{name}", "DENY", "does not grant publish"],
        ),
        (["private-room"], 1, ["private-{name}", "principal anonymous", "DENY (401"]),
        (["news"], 0, ["principal anonymous", "ALLOW", "anyone"]),
        (
            ["presence-lobby", "--user", "5", "--claim", "name=Ann"],
            0,
            ["presence-{name}", "ALLOW as presence member '5'", "name='Ann'"],
        ),
    ],
)
def test_policy_explain(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, expected: list[str]
) -> None:
    assert main(["policy", "explain", *argv]) == code
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith(f"channel {argv[0]}, action ")
    assert "built-in default" in captured.out
    for text in expected:
        assert text in captured.out


def test_policy_explain_uses_the_policy_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\npattern = "team-{name}"\nsubscribe = ["user"]\n')
    monkeypatch.setenv("RELAY_POLICY_FILE", str(policy))
    assert main(["policy", "explain", "team-red", "--user", "1"]) == 0
    out = capsys.readouterr().out
    assert "team-{name}" in out
    assert str(policy) in out
    assert main(["policy", "explain", "news", "--user", "1"]) == 1
    assert "no rule" in capsys.readouterr().out


# --- configuration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["check"],
        ["token", "--user", "42"],
        ["policy", "explain", "news"],
        ["publish", "news", "greeting", "{}"],
    ],
)
def test_configuration_error_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.setenv("RELAY_PORT", "abc")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_line(captured.err)
    assert line.startswith("relay: configuration error: RELAY_PORT: ")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RELAY_JWT_SECRET", "too-short-secret-value"),
        ("RELAY_API_KEYS", "short-key-value"),
        ("RELAY_PROVIDER", "nope"),
    ],
)
def test_configuration_error_names_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["check"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"relay: configuration error: {name}: ")
    assert value not in line


def test_a_provider_without_credentials_names_them_all_in_plain_words(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELAY_PROVIDER", "pusher")
    monkeypatch.setenv("PUSHER_CLUSTER", "EU 1")
    assert main(["check"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "relay: configuration error: PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET: required, not set",
        "relay: configuration error: PUSHER_CLUSTER: must match ^[a-z0-9-]{1,32}$",
    ]


def test_production_names_every_problem_of_relay_and_provider_in_one_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in OWN_VALUES:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RELAY_ENV", "production")
    monkeypatch.setenv("RELAY_PROVIDER", "ably")
    monkeypatch.setenv("RELAY_PORT", "eighty")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "relay: configuration error: RELAY_PORT: must be a whole number",
        "relay: configuration error: RELAY_JWT_SECRET, RELAY_API_KEYS: set your own; the "
        "development defaults are refused when RELAY_ENV=production",
        "relay: configuration error: ABLY_API_KEY: required, not set",
    ]


def test_commands_that_do_not_use_the_provider_do_not_ask_for_its_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELAY_PROVIDER", "supabase")
    assert main(["token", "--user", "42"]) == 0
    assert main(["policy", "explain", "news"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "argv",
    [["token", "--user", "42"], ["policy", "explain", "news"], ["publish", "news", "e", "{}"]],
)
def test_only_serve_and_check_warn_about_development_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    for name in OWN_VALUES:
        monkeypatch.delenv(name)
    with respx.mock(assert_all_called=False) as router:
        router.post("http://127.0.0.1:8000/v1/events").mock(
            return_value=httpx.Response(202, json={"accepted": 1})
        )
        main(argv)
    assert capsys.readouterr().err == ""


def test_production_refuses_a_dev_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELAY_ENV", "production")
    monkeypatch.delenv("RELAY_APP_SECRET")
    assert main(["check"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("relay: configuration error: RELAY_APP_SECRET: ")
    assert "relay-dev-secret-change-me" not in line


# --- publish -----------------------------------------------------------------------------------


def test_publish_to_a_closed_port(capsys: pytest.CaptureFixture[str], closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    assert main(["publish", "news", "greeting", '{"a":1}', "--url", url]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_line(captured.err)
    assert line.startswith(f"relay: cannot reach {url}/v1/events: ")


def test_publish_defaults_to_relay_host_and_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    monkeypatch.setenv("RELAY_PORT", str(closed_port))
    assert main(["publish", "news", "greeting", '"hi"']) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"http://127.0.0.1:{closed_port}/v1/events" in line


@pytest.mark.parametrize(
    ("data", "options", "sent"),
    [
        ('{"text":"hi","n":[1,2]}', [], {"text": "hi", "n": [1, 2]}),
        ("42", [], 42),
        ('"quoted"', [], "quoted"),
        ("plain words", ["--raw"], "plain words"),
        ('{"a":', ["--raw"], '{"a":'),
        ('"quoted"', ["--raw"], '"quoted"'),
    ],
)
def test_publish_sends_the_event_with_the_api_key(
    capsys: pytest.CaptureFixture[str], data: str, options: list[str], sent: object
) -> None:
    with respx.mock(assert_all_called=True) as router:
        route = router.post("http://relay.test/v1/events").mock(
            return_value=httpx.Response(202, json={"ok": True})
        )
        argv = ["publish", "news", "greeting", data, "--url", "http://relay.test/", *options]
        assert main(argv) == 0
    request = route.calls.last.request
    assert request.headers["X-API-Key"] == API_KEY
    assert orjson.loads(request.content) == {"name": "greeting", "channel": "news", "data": sent}
    captured = capsys.readouterr()
    assert orjson.loads(captured.out) == {"ok": True}
    assert captured.err == ""  # no line from httpx either


@pytest.mark.parametrize("data", ['{"a":', "plain words", "{'a': 1}", "[1, 2", ""])
def test_publish_refuses_data_that_is_not_json(
    capsys: pytest.CaptureFixture[str], data: str
) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post("http://relay.test/v1/events")
        assert main(["publish", "news", "greeting", data, "--url", "http://relay.test"]) == 2
    assert not route.called
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_line(captured.err)
    assert line.startswith("relay: DATA is not valid JSON (")
    assert "--raw" in line


@pytest.mark.parametrize(
    ("response", "detail"),
    [
        (
            httpx.Response(
                403,
                json={"type": "urn:realtime-relay:problem:forbidden", "detail": "no publish"},
            ),
            "no publish",
        ),
        (httpx.Response(502, text="bad gateway"), "bad gateway"),
    ],
)
def test_publish_refused_is_one_line(
    capsys: pytest.CaptureFixture[str], response: httpx.Response, detail: str
) -> None:
    with respx.mock(assert_all_called=True) as router:
        router.post("http://relay.test/v1/events").mock(return_value=response)
        assert main(["publish", "news", "greeting", "{}", "--url", "http://relay.test"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_line(captured.err)
    assert line == f"relay: publish refused ({response.status_code}): {detail}"


# --- serve's banner ----------------------------------------------------------------------------


def test_the_banner_and_the_readme_give_the_same_pusher_js_settings() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    (_, line) = banner(Settings(app_key="relay-dev-key"), "127.0.0.1", 8000)
    prefix = "pusher-js: new Pusher('relay-dev-key', { "
    assert line.startswith(prefix)
    assert line.endswith(" })")
    options = line.removeprefix(prefix).removesuffix(" })")
    assert options == (
        "cluster: 'local', wsHost: '127.0.0.1', wsPort: 8000, forceTLS: false, "
        "enabledTransports: ['ws']"
    )
    # The README's front-end snippet: the app key, then exactly these options on one line.
    snippet = readme.split("### In your front end (pusher-js)", 1)[1].split("```", 2)[1]
    assert "new Pusher('relay-dev-key', {\n" in snippet
    assert f"\n  {options},\n" in snippet
    assert "'wss'" not in readme


def test_the_banner_follows_the_port_and_names_a_reachable_host() -> None:
    (first, line) = banner(Settings(app_key="own-key"), "0.0.0.0", 9000)
    assert first == "serving provider 'local' on http://0.0.0.0:9000"
    assert "new Pusher('own-key', { " in line
    assert "wsHost: '127.0.0.1', wsPort: 9000," in line
    assert banner(Settings(provider="pusher"), "127.0.0.1", 8000) == [
        "serving provider 'pusher' on http://127.0.0.1:8000"
    ]


# --- check -------------------------------------------------------------------------------------


def test_check_names_provider_and_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    captured = capsys.readouterr()
    line = _one_line(captured.out)
    assert "configuration ok" in line
    assert "provider 'local'" in line
    assert "policy built-in default" in line
    assert captured.err == ""


def test_check_names_the_policy_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "relay-policy.toml"
    with resources.as_file(resources.files("core.policy") / "default.toml") as default:
        shutil.copyfile(default, policy)
    monkeypatch.setenv("RELAY_POLICY_FILE", str(policy))
    assert main(["check"]) == 0
    line = _one_line(capsys.readouterr().out)
    assert f"policy {policy}" in line


def test_check_warns_about_dev_defaults_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RELAY_APP_KEY")
    assert main(["check"]) == 0
    captured = capsys.readouterr()
    assert "provider 'local'" in captured.out
    assert "RELAY_APP_KEY" in captured.err
    for secret in SECRETS:
        assert secret not in captured.err


# --- check --live --------------------------------------------------------------------------------
# The providers' answers as their references document them (soketi stands in for Pusher in
# tests/e2e/test_check_live.py; the apigateway provider's tables are moto's).
ABLY_KEY = "appId.keyId:cli-ably-secret"
ABLY_HISTORY = "https://main.realtime.ably.net/channels/realtime-relay-check/messages"
ABLY_INVALID_CREDENTIALS = {
    "error": {
        "message": "Invalid credentials; cause: invalid key secret",
        "code": 40101,
        "statusCode": 401,
        "href": "https://help.ably.io/error/40101",
    }
}
SUPABASE_URL = "https://abcdefghijklmnop.supabase.co"
SUPABASE_KEY = "cli-supabase-service-role-key"


def test_check_live_on_local_says_there_is_nothing_to_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "--live"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "relay: live check: local calls no outside service: there are no credentials to try"
    )


@pytest.fixture
def ably(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_PROVIDER", "ably")
    monkeypatch.setenv("ABLY_API_KEY", ABLY_KEY)
    monkeypatch.setenv("ABLY_MAX_ATTEMPTS", "1")


@pytest.mark.usefixtures("ably")
def test_check_live_reads_ably_history_with_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock(assert_all_called=True) as router:
        route = router.get(ABLY_HISTORY, params={"limit": "1"}).mock(
            return_value=httpx.Response(200, json=[])
        )
        assert main(["check", "--live"]) == 0
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(ABLY_KEY.encode()).decode()
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == (
        "relay: live check ok: https://main.realtime.ably.net:443 accepted the key appId.keyId "
        "(GET /channels/realtime-relay-check/messages)"
    )
    assert captured.err == ""


@pytest.mark.usefixtures("ably")
def test_check_live_fails_when_ably_refuses_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock(assert_all_called=True) as router:
        router.get(ABLY_HISTORY).mock(
            return_value=httpx.Response(401, json=ABLY_INVALID_CREDENTIALS)
        )
        assert main(["check", "--live"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "relay: live check failed: ably refused GET /channels/realtime-relay-check/messages "
        "(401, code 40101: Invalid credentials; cause: invalid key secret)\n"
    )
    assert "cli-ably-secret" not in captured.err + captured.out


@pytest.fixture
def supabase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_PROVIDER", "supabase")
    monkeypatch.setenv("SUPABASE_URL", SUPABASE_URL)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SUPABASE_KEY)
    monkeypatch.setenv("SUPABASE_JWT_SECRET", "cli-supabase-jwt-secret-0123456789abcdef")
    monkeypatch.setenv("SUPABASE_MAX_ATTEMPTS", "1")


@pytest.mark.usefixtures("supabase")
def test_check_live_broadcasts_nothing_anyone_hears_to_supabase(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with respx.mock(assert_all_called=True) as router:
        route = router.post(f"{SUPABASE_URL}/realtime/v1/api/broadcast").mock(
            return_value=httpx.Response(202)  # Realtime's documented answer: 202, no body
        )
        assert main(["check", "--live"]) == 0
    sent = route.calls.last.request
    assert sent.headers["apikey"] == SUPABASE_KEY
    assert sent.headers["Authorization"] == f"Bearer {SUPABASE_KEY}"
    assert orjson.loads(sent.content) == {
        "messages": [
            {"topic": "realtime-relay-check", "event": "check", "payload": {}, "private": False}
        ]
    }
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"relay: live check ok: {SUPABASE_URL}/realtime/v1/api/broadcast accepted the service "
        "role key (topic realtime-relay-check)"
    )


@pytest.mark.usefixtures("supabase")
def test_check_live_fails_when_supabase_refuses_the_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with respx.mock(assert_all_called=True) as router:
        router.post(f"{SUPABASE_URL}/realtime/v1/api/broadcast").mock(
            # What Realtime's AuthTenant plug answers a token it cannot verify.
            return_value=httpx.Response(401, json={"message": "Unauthorized"})
        )
        assert main(["check", "--live"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "relay: live check failed: supabase refused the broadcast (401): Unauthorized\n"
    )
    assert SUPABASE_KEY not in captured.err


@pytest.mark.usefixtures("supabase")
def test_check_live_fails_when_the_provider_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with respx.mock(assert_all_called=True) as router:
        router.post(f"{SUPABASE_URL}/realtime/v1/api/broadcast").mock(
            side_effect=httpx.ConnectError("refused")
        )
        assert main(["check", "--live"]) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after a warning line per attempt
    assert last.startswith("relay: live check failed: supabase unreachable")


@pytest.fixture
def apigateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    aws_environment(monkeypatch)
    monkeypatch.setenv("RELAY_PROVIDER", "apigateway")
    monkeypatch.setenv("APIGW_TABLE_PREFIX", "relay-cli")
    with mock_aws():
        yield


@pytest.mark.usefixtures("apigateway")
def test_check_live_reads_the_apigateway_tables(capsys: pytest.CaptureFixture[str]) -> None:
    deploy_infra("relay-cli")
    assert main(["check", "--live"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "relay: live check ok: DynamoDB (us-east-1) answered reads of relay-cli-connections, "
        "relay-cli-subscriptions, relay-cli-presence"
    )


@pytest.mark.usefixtures("apigateway")
def test_check_live_fails_without_the_apigateway_tables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "--live"]) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("relay: live check failed: DynamoDB get_item failed (")
    assert "ResourceNotFoundException" in last
