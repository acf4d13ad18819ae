"""`make package` builds the Lambda artifact offline (serverless package, v3), with what each
provider needs and nothing else, under the size target, from a template that holds no secret;
`serverless package` alone, without the bundle `make package` builds, refuses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ROOT
from tests.e2e.packaging import SERVERLESS, make_package, offline_env

pytestmark = pytest.mark.e2e

MAX_ZIP_BYTES = 10 * 1024 * 1024
NEVER = ("tests/", "node_modules/", ".venv/", "docs/", "bench/", "infra/", ".git/", "examples/")
OTHER_SDKS = (
    "boto3",
    "botocore",
    "uvicorn",
    "pusher",
    "ably",
    "realtime",
    "redis",
    "moto",
    "pytest",
)


class Artifact:
    """One provider's packaged zip and compiled template."""

    def __init__(self, provider: str, folder: Path, *, default: bool = False) -> None:
        self.provider = provider
        self.zip_path = make_package(folder, provider=None if default else provider)
        with zipfile.ZipFile(self.zip_path) as archive:
            self.names = archive.namelist()
        self.template: dict[str, Any] = json.loads(
            (folder / "cloudformation-template-update-stack.json").read_text()
        )
        self.template_path = folder / "cloudformation-template-update-stack.json"

    def vendored(self) -> set[str]:
        prefix = f".build/lambda/{self.provider}/"
        return {n[len(prefix) :].split("/")[0] for n in self.names if n.startswith(prefix)}


@pytest.fixture(scope="module")
def apigateway(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return Artifact("apigateway", tmp_path_factory.mktemp("package-apigateway"))


@pytest.fixture(scope="module")
def pusher(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return Artifact("pusher", tmp_path_factory.mktemp("package-pusher"))


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """`make package` with no PROVIDER: the local provider."""
    return Artifact("local", tmp_path_factory.mktemp("package-local"), default=True)


@pytest.mark.parametrize("provider", ["local", "apigateway"])
def test_the_artifact_is_small_and_complete(provider: str, request: pytest.FixtureRequest) -> None:
    artifact: Artifact = request.getfixturevalue(provider)
    assert artifact.zip_path.stat().st_size <= MAX_ZIP_BYTES
    names = set(artifact.names)
    for needed in (
        "app/lambda_handler.py",
        "app/main.py",
        "core/provider.py",
        "core/policy/default.toml",
        "providers/registry.py",
        "providers/pusherproto/signing.py",
        "providers/outbound/client.py",
        f"providers/{provider}/provider.py",
        f".build/lambda/{provider}/.requirements",  # the bundle's marker
        f".build/lambda/{provider}/fastapi/__init__.py",
        f".build/lambda/{provider}/starlette/__init__.py",
        f".build/lambda/{provider}/mangum/__init__.py",
        f".build/lambda/{provider}/pydantic_core/__init__.py",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(NEVER)]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [
        n
        for n in names
        if n.startswith("providers/")
        and n.count("/") > 1
        and n.split("/")[1] not in (provider, "pusherproto", "outbound")
    ]
    vendored = artifact.vendored()
    assert not vendored & set(OTHER_SDKS)  # boto3 is the Lambda runtime's own
    assert "nacl" in vendored  # encrypted channels (imported on the first encrypted publish)
    assert "cryptography" not in vendored  # built without --jwks
    assert "bin" not in vendored


def test_make_package_packages_the_local_provider_by_default(local: Artifact) -> None:
    resources = local.template["Resources"]
    functions = {
        r["Properties"]["Handler"]: r
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function"
    }
    # The HTTP API, and the webhook queue's consumer (idle until RELAY_WEBHOOK_URL is set).
    assert set(functions) == {"app.lambda_handler.handler", "app.webhooks_lambda.consume"}
    variables = functions["app.lambda_handler.handler"]["Properties"]["Environment"]["Variables"]
    assert variables["RELAY_PROVIDER"] == "local"
    assert variables["RELAY_VENDOR_DIR"] == "/var/task/.build/lambda/local"
    assert "WebsocketsApi" not in resources


def test_the_pusher_artifact_has_nacl_and_no_websocket_api(pusher: Artifact) -> None:
    assert pusher.zip_path.stat().st_size <= MAX_ZIP_BYTES
    assert "nacl" in pusher.vendored()
    assert not [n for n in pusher.names if n.startswith("providers/apigateway/")]
    resources = pusher.template["Resources"]
    assert "WebsocketsApi" not in resources
    assert "ConnectionsTable" not in resources
    assert "StateTable" in resources


def test_the_template_grants_exactly_what_the_functions_use(apigateway: Artifact) -> None:
    resources = apigateway.template["Resources"]
    assert "IamRoleLambdaExecution" not in resources  # the framework's role would add a wildcard
    policy = resources["RelayLambdaRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    statements = policy["Statement"]
    text = json.dumps(statements)
    assert "execute-api:*" not in text
    manage = next(s for s in statements if s["Action"] == ["execute-api:ManageConnections"])
    [arn] = manage["Resource"]
    assert "${WebsocketsApi}/ci/*/@connections/*" in arn["Fn::Sub"]
    tables = {
        r["Fn::GetAtt"][0]
        for s in statements
        if any(a.startswith("dynamodb:") for a in s["Action"])
        for r in s["Resource"]
    }
    assert tables == {"StateTable", "ConnectionsTable", "SubscriptionsTable", "PresenceTable"}
    assert all(s["Resource"] != "*" for s in statements)
    for name, resource in resources.items():
        if resource["Type"] == "AWS::DynamoDB::Table":
            props = resource["Properties"]
            assert props["BillingMode"] == "PAY_PER_REQUEST", name
            assert props["TimeToLiveSpecification"]["Enabled"] is True, name


def test_no_secret_is_in_the_template(apigateway: Artifact) -> None:
    functions = [
        r for r in apigateway.template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
    ]
    assert len(functions) == 7  # api, connect, disconnect, message, handshake, fanout, webhooks
    for function in functions:
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["RELAY_SSM_PATH"] == "/realtime-relay/ci"
        assert not [k for k in variables if "SECRET" in k or k.endswith("_KEYS")]
        handler = function["Properties"]["Handler"]
        module = handler.rsplit(".", 1)[0].replace(".", "/") + ".py"
        assert module in apigateway.names, handler


def test_the_compiled_template_passes_cfn_lint(apigateway: Artifact) -> None:
    lint = Path(sys.executable).with_name("cfn-lint")
    # W3005: the framework adds DependsOn that a GetAtt already implies; harmless.
    done = subprocess.run(
        [str(lint), "--ignore-checks", "W3005", "--", str(apigateway.template_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_infra_templates_pass_cfn_lint() -> None:
    lint = Path(sys.executable).with_name("cfn-lint")
    templates = sorted(str(p) for p in (Path(__file__).parents[2] / "infra").glob("*.yaml"))
    # The tables, the webhook queue, the AppSync Event API: a template added is linted too.
    assert len(templates) >= 4
    done = subprocess.run(
        [str(lint), "--", *templates], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# Run in a fresh interpreter whose `app`, `core` and `providers` are only what the zip holds: `-S`
# keeps site-packages' editable-install hook (which maps them to the repository) out, and the
# environment's own libraries stand in for the vendored ones (built for the Lambda runtime's
# Python). Every module of the provider is imported, so a shared module the package patterns
# leave out fails here, not on a cold start in AWS.
PACKAGED = """
import importlib, json, pathlib, pkgutil, sys
import app, core, providers
root = pathlib.Path(sys.argv[1])
for own in (app, core, providers):
    assert pathlib.Path(own.__file__).is_relative_to(root), own.__file__
from app.lambda_handler import handler
event = json.loads(pathlib.Path(sys.argv[2]).read_text())
assert handler(event, None)["statusCode"] == 200
package = importlib.import_module("providers." + sys.argv[3])
for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(module.name)
print("ok")
"""

PROVIDER_ENV = {
    "pusher": {"PUSHER_APP_ID": "4242", "PUSHER_KEY": "package-key", "PUSHER_SECRET": "x" * 24},
    "apigateway": {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "package",
        "AWS_SECRET_ACCESS_KEY": "package",
        "APIGW_ENDPOINT": "http://127.0.0.1:9",
    },
}


@pytest.mark.parametrize("provider", ["local", "pusher", "apigateway"])
def test_the_packaged_code_alone_serves_and_imports_every_module(
    provider: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    artifact: Artifact = request.getfixturevalue(provider)
    with zipfile.ZipFile(artifact.zip_path) as archive:
        own = [n for n in archive.namelist() if n.startswith(("app/", "core/", "providers/"))]
        archive.extractall(tmp_path, members=own)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "PYTHON"))}
    environ.update(
        PYTHONPATH=os.pathsep.join([str(tmp_path), sysconfig.get_paths()["purelib"]]),
        RELAY_ENV="test",
        RELAY_PROVIDER=provider,
        RELAY_APP_SECRET="package-app-secret-0123456789",
        RELAY_JWT_SECRET="package-jwt-secret-0123456789abcdef0123456789",
        RELAY_API_KEYS="package-api-key-0123456789",
        **PROVIDER_ENV.get(provider, {}),
    )
    sample = Path(__file__).resolve().parents[1] / "events" / "httpapi_health.json"
    done = subprocess.run(
        [sys.executable, "-S", "-c", PACKAGED, str(tmp_path), str(sample), provider],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # `-c` puts the working directory first on the path
        env=environ,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


@pytest.mark.parametrize("bundle", ["missing", "incomplete"])
def test_serverless_package_alone_refuses_without_the_bundle(bundle: str, tmp_path: Path) -> None:
    # A copy of the service, so that the checkout's bundles stay: the bundle is absent, or an
    # interrupted build left libraries without the marker written last.
    service = tmp_path / "service"
    skip = shutil.ignore_patterns("__pycache__")
    for part in ("app", "core", "providers", "infra"):
        shutil.copytree(ROOT / part, service / part, ignore=skip)
    shutil.copy(ROOT / "serverless.yml", service)
    (service / "node_modules").symlink_to(ROOT / "node_modules")
    if bundle == "incomplete":
        (service / ".build/lambda/local/fastapi").mkdir(parents=True)
        (service / ".build/lambda/local/fastapi/__init__.py").write_text("")
    output = tmp_path / "package"
    node = shutil.which("node") or "node"
    done = subprocess.run(
        [node, str(SERVERLESS), "package", "--param", "provider=local", "--package", str(output)],
        cwd=service,
        env=offline_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert "`make package PROVIDER=local`" in said, said
    assert "Service packaged" not in said
    assert not (output / "realtime-relay.zip").exists()
