"""The Lambda entry point: Mangum around the app, built once per container, secrets from SSM,
vendored dependencies first on the path, and no boto3 on the cold path of the providers that do
not need it."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from app import lambda_handler
from tests import lambda_runtime
from tests.e2e.apigw_support import ROOT, aws_environment, event
from tests.import_probe import fresh

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

APP_SECRET = "lambda-app-secret-0123456789"
JWT_SECRET = "lambda-jwt-secret-0123456789abcdef0123456789"
API_KEY = "lambda-api-key-0123456789"
LOCAL_ENV = {
    "RELAY_ENV": "test",
    "RELAY_PROVIDER": "local",
    "RELAY_APP_ID": "4242",
    "RELAY_APP_KEY": "lambda-key",
    "RELAY_APP_SECRET": APP_SECRET,
    "RELAY_JWT_SECRET": JWT_SECRET,
    "RELAY_API_KEYS": API_KEY,
}


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    aws_environment(monkeypatch)
    for name, value in LOCAL_ENV.items():
        monkeypatch.setenv(name, value)
    yield
    lambda_runtime.install()


def test_http_events_are_served_by_one_app_per_container(local_env: None) -> None:
    first = lambda_handler.handler(event("httpapi_health"), None)
    assert first["statusCode"] == 200
    assert json.loads(first["body"])["provider"] == "local"
    app = lambda_handler.runtime().app
    second = lambda_handler.handler(event("httpapi_health"), None)
    assert second["statusCode"] == 200
    assert lambda_handler.runtime().app is app  # built once, reused while the container is warm


def test_secrets_come_from_ssm(local_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_APP_SECRET")
    monkeypatch.delenv("RELAY_API_KEYS")
    monkeypatch.setenv("RELAY_SSM_PATH", "/realtime-relay/unit")
    with mock_aws():
        ssm = boto3.client("ssm")
        ssm.put_parameter(
            Name="/realtime-relay/unit/RELAY_APP_SECRET", Value=APP_SECRET, Type="SecureString"
        )
        ssm.put_parameter(Name="/realtime-relay/unit/RELAY_API_KEYS", Value=API_KEY, Type="String")
        ssm.put_parameter(Name="/realtime-relay/unit/notes", Value="not a variable", Type="String")
        ssm.put_parameter(Name="/realtime-relay/unit/deeper/RELAY_X", Value="nested", Type="String")
        rt = lambda_handler.runtime()
    assert rt.relay.settings.app_secret.get_secret_value() == APP_SECRET
    assert os.environ["RELAY_API_KEYS"] == API_KEY
    assert "notes" not in os.environ
    assert "RELAY_X" not in os.environ  # only the path's own parameters
    monkeypatch.delenv("RELAY_APP_SECRET")  # set by the loader: monkeypatch restores the rest


def test_load_ssm_parameters_names(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_environment(monkeypatch)
    with mock_aws():
        ssm = boto3.client("ssm")
        for i in range(12):  # more than one page (GetParametersByPath pages by 10)
            ssm.put_parameter(Name=f"/p/RELAY_K{i:02d}", Value=str(i), Type="SecureString")
        names = lambda_handler.load_ssm_parameters("/p", client=ssm)
    assert names == [f"RELAY_K{i:02d}" for i in range(12)]
    assert os.environ["RELAY_K11"] == "11"
    for name in names:
        monkeypatch.delenv(name)


def test_vendored_dependencies_go_first_on_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("RELAY_VENDOR_DIR", str(tmp_path))
    lambda_handler._vendor_path()
    assert sys.path[0] == str(tmp_path)
    monkeypatch.setenv("RELAY_VENDOR_DIR", str(tmp_path / "missing"))
    lambda_handler._vendor_path()
    assert str(tmp_path / "missing") not in sys.path  # serverless-offline: no such folder


PROBE = """
import json, sys
{first}
from app import lambda_handler
{then}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def _loaded(first: str, then: str, **env: str) -> list[str]:
    loaded: list[str] = fresh(PROBE.format(first=first, then=then), {**LOCAL_ENV, **env})
    return loaded


HEALTH = f"""
sample = json.loads(open({str(ROOT / "tests" / "events" / "httpapi_health.json")!r}).read())
assert lambda_handler.handler(sample, None)["statusCode"] == 200
"""


SAMPLE = ROOT / "tests" / "events" / "httpapi_health.json"
COLLECTOR = f"""
import gc, json
from pathlib import Path
from app import lambda_handler, relay as relay_module
seen = []
build = relay_module.Relay.build
def spy(*args, **kwargs):
    seen.append(gc.isenabled())
    return build(*args, **kwargs)
relay_module.Relay.build = spy
sample = json.loads(Path({str(SAMPLE)!r}).read_text())
assert lambda_handler.handler(sample, None)["statusCode"] == 200
seen.append(gc.isenabled())
seen.append(gc.get_freeze_count())
print(json.dumps(seen))
"""


@pytest.mark.parametrize("enabled_before", [True, False])
def test_the_cold_build_pauses_the_collector_then_freezes_what_it_built(
    enabled_before: bool,
) -> None:
    first = "" if enabled_before else "import gc; gc.disable()"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"{first}\n{COLLECTOR}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}, **LOCAL_ENV},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    during, after, frozen = json.loads(done.stdout.strip().splitlines()[-1])
    assert during is False  # the relay was built with the collector paused
    assert after is enabled_before  # and the collector is back as it was
    assert frozen > 20_000  # the cold start's objects are out of the collector's way


def test_a_failed_build_freezes_nothing_and_restores_the_collector() -> None:
    before = gc.get_freeze_count()
    during: list[bool] = []

    def failing_build() -> None:
        with lambda_handler.collector_paused():
            during.append(gc.isenabled())
            raise RuntimeError("the build failed")

    with pytest.raises(RuntimeError):
        failing_build()
    assert during == [False]
    assert gc.isenabled()
    assert gc.get_freeze_count() == before


def test_the_local_cold_path_never_imports_boto3() -> None:
    loaded = _loaded("", HEALTH)
    assert "mangum" in loaded  # the probe sees what the handler imported
    assert "boto3" not in loaded
    assert "botocore" not in loaded


def test_the_dynamodb_store_loads_boto3_on_its_first_call_not_at_the_cold_start() -> None:
    loaded = _loaded(
        "",
        HEALTH,
        RELAY_STORE="dynamodb",
        RELAY_DYNAMODB_TABLE="relay-state",
        AWS_REGION="eu-west-1",
    )
    assert "mangum" in loaded  # the relay, its store included, was built
    assert "boto3" not in loaded
    assert "botocore" not in loaded


def test_the_apigateway_handlers_import_boto3_only_when_they_call_aws() -> None:
    loaded = _loaded(
        "",
        "import app.lambda_websocket, providers.apigateway.provider",
        RELAY_PROVIDER="apigateway",
    )
    assert "boto3" not in loaded
    assert "botocore" not in loaded
    with_sdk = _loaded("import boto3", "")
    assert "boto3" in with_sdk  # the probe would see it


def test_the_handler_paths_of_earlier_releases_still_resolve() -> None:
    # A serverless.yml written for an earlier release names providers.apigateway.handlers.*.
    from app import lambda_websocket
    from providers.apigateway import handlers

    for name in ("connect", "disconnect", "message", "handshake", "fanout"):
        assert getattr(handlers, name) is getattr(lambda_websocket, name)


def test_http_api_events_from_the_apigateway_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_environment(monkeypatch)
    for name, value in {**LOCAL_ENV, "RELAY_PROVIDER": "apigateway"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("APIGW_ENDPOINT", "http://127.0.0.1:9/unused")
    try:
        answer: dict[str, Any] = lambda_handler.handler(event("httpapi_health"), None)
        assert json.loads(answer["body"])["provider"] == "apigateway"
    finally:
        lambda_runtime.install()
