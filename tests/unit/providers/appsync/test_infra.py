"""infra/appsync-events.yaml and serverless.yml's appsync wiring: cfn-lint clean, the relay's
function deciding every connect, subscribe and publish, and least privilege for its role."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[4]
TEMPLATE = ROOT / "infra/appsync-events.yaml"


def _load(path: Path) -> Any:
    return cfn_yaml.load(str(path))


def test_the_template_passes_cfn_lint() -> None:
    lint = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run(
        [str(lint), "--", str(TEMPLATE)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_clients_go_through_the_relays_authorizer_and_the_relay_through_iam() -> None:
    config = _load(TEMPLATE)["Resources"]["EventApi"]["Properties"]["EventConfig"]
    assert [p["AuthType"] for p in config["AuthProviders"]] == ["AWS_LAMBDA", "AWS_IAM"]
    assert [m["AuthType"] for m in config["ConnectionAuthModes"]] == ["AWS_LAMBDA"]
    assert [m["AuthType"] for m in config["DefaultSubscribeAuthModes"]] == ["AWS_LAMBDA"]
    # no API_KEY anywhere: a key would let whoever holds it past the policy
    assert "API_KEY" not in str(config)


def test_one_namespace_whose_every_subscribe_and_publish_the_relay_decides() -> None:
    resources = _load(TEMPLATE)["Resources"]
    namespaces = [r for r in resources.values() if r["Type"] == "AWS::AppSync::ChannelNamespace"]
    assert len(namespaces) == 1
    properties = namespaces[0]["Properties"]
    assert properties["Name"] == "relay"  # providers/appsync/settings.py's default namespace
    for handler in ("OnSubscribe", "OnPublish"):
        config = properties["HandlerConfigs"][handler]
        assert config["Behavior"] == "DIRECT"
        assert config["Integration"]["LambdaConfig"]["InvokeType"] == "REQUEST_RESPONSE"
    source = resources["RelayDataSource"]["Properties"]
    assert source["Type"] == "AWS_LAMBDA"


def test_the_relays_role_may_publish_to_its_namespace_and_nothing_else() -> None:
    custom = _load(ROOT / "serverless.yml")["custom"]
    wiring = custom["appsyncWiring"]
    assert {k for k, v in wiring.items() if v} == {"appsync"}
    resources = wiring["appsync"]["Resources"]
    statements = resources["RelayEventPublishPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": ["appsync:EventPublish"],
            "Resource": [{"Fn::GetAtt": ["RelayNamespace", "ChannelNamespaceArn"]}],
        }
    ]
    permission = resources["EventApiAuthorizerPermission"]["Properties"]
    assert permission["Principal"] == "appsync.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["EventApi", "ApiArn"]}
    handler_role = _load(TEMPLATE)["Resources"]["EventHandlerRole"]["Properties"]
    (invoke,) = handler_role["Policies"][0]["PolicyDocument"]["Statement"]
    assert invoke["Action"] == ["lambda:InvokeFunction"]
    assert "appsync" in custom["websocketFunctions"]["appsync"]
    assert custom["websocketFunctions"]["appsync"]["appsync"]["handler"] == (
        "app.lambda_appsync.handler"
    )
