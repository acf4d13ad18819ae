"""Schemathesis over the relay's own OpenAPI document, in-process (ASGI), on the local provider.

For every operation the document lists, cases are generated from its schema (positive: what the
schema allows; negative: what it does not) and sent with a backend API key, an end user's token or
no credential. Whatever comes back:

- no 5xx, except 501 `not-supported`, the documented answer of a call the provider cannot serve;
- every 4xx (and that 501) is `application/problem+json` with a stable `type`, a `title` and the
  response's `status`;
- no configured secret appears in any answer.

The headers the relay reads besides credentials (`Last-Event-ID`, `Idempotency-Key`,
`X-Forwarded-For`, `Origin`) are declared as optional header parameters of the document the
fuzzer reads (`FUZZ_DOCUMENT`, a copy of the app's own): positive cases send them well formed (so
the code past the check runs: a replay, a stored answer, a walked proxy chain, an allowed origin),
negative cases malformed. For them to be read at all, the fuzzed relay trusts one proxy hop, lists
one allowed origin, and sees every request come from 127.0.0.1 (an ASGI test client has no IP
address of its own).

`RELAY_FUZZ_EXAMPLES` sets the examples per operation and mode: small by default (the short run
of `make test`), larger for `make fuzz`. Generation is derandomized, so a run is repeatable, and no
example database is kept; Hypothesis still caches what it derives from the code (character
tables, constants) under `.hypothesis/` in the working directory, which git ignores.
"""

from __future__ import annotations

import copy
import os
import re
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import schemathesis
from fastapi.openapi.utils import get_openapi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.python import asgi

from app.main import create_app
from core.settings import Settings
from core.tokens import mint_dev_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI
    from schemathesis import APIOperation, Case, Response
    from starlette.types import ASGIApp, Receive, Scope, Send

EXAMPLES = int(os.environ.get("RELAY_FUZZ_EXAMPLES", "15"))
APP_ID = "6060"
API_KEY = "fuzz-api-key-0123456789abcdef"
SECRETS = (
    "fuzz-app-secret-0123456789abcdef",
    "fuzz-jwt-secret-0123456789abcdef-0123456789",
    API_KEY,
)
SETTINGS = Settings.model_validate(
    {
        "env": "test",
        "provider": "local",
        "app_id": APP_ID,
        "app_key": "fuzz-key",
        "app_secret": SECRETS[0],
        "jwt_secret": SECRETS[1],
        "api_keys": API_KEY,
        # Fuzzing sends bursts from one address; buckets would answer 429 before the handlers.
        "rate_limits": False,
        "sse_heartbeat_seconds": 0.05,
        # So that X-Forwarded-For and Origin are read rather than ignored (see the module doc).
        "trust_proxy_headers": True,
        "allowed_origins": "https://app.fuzz.test",
    }
)
PROBLEM = "application/problem+json"
PROBLEM_PREFIX = "urn:realtime-relay:problem:"
CREDENTIALS = {
    "api-key": {"X-API-Key": API_KEY},
    "user": {"Authorization": "Bearer " + mint_dev_token(SETTINGS, user_id="fuzz", name="Fuzz")},
    "anonymous": {},
}
# Path parameters that gate everything behind them: fixed to the configured values in the
# `anchored` mode, so the fuzzer reaches signature checks and the webhook verifier.
ANCHORS = {"app_id": APP_ID, "provider": "local"}


def _document(app: FastAPI) -> dict[str, Any]:
    # Every route the app serves, those the local provider answers with 501 (and /docs leaves
    # out: app/docs.py) included, so that they are fuzzed too; any warning (a duplicate
    # operationId) fails here.
    document: dict[str, Any] = get_openapi(
        title=app.title, version=app.version, openapi_version=app.openapi_version, routes=app.routes
    )
    return document


APP = create_app(SETTINGS)
DOCUMENT = _document(APP)
EPOCH = APP.state.relay.provider.hub.epoch
IPV4 = r"(\d{1,3}\.){3}\d{1,3}"
# header -> (a well-formed value's schema, the operations that read it: None for every one)
HEADERS: dict[str, tuple[dict[str, Any], tuple[tuple[str, str], ...] | None]] = {
    "Last-Event-ID": (
        {"pattern": rf"^({EPOCH}|[0-9a-f]{{8}})-[0-9]{{1,4}}$"},
        (("get", "/v1/stream"),),
    ),
    "Idempotency-Key": (
        {"pattern": r"^[A-Za-z0-9._~-]{1,64}$"},
        (("post", "/v1/events"), ("post", "/v1/batch")),
    ),
    "X-Forwarded-For": ({"pattern": rf"^{IPV4}(, ?({IPV4}|[0-9a-f:]{{2,39}})){{0,3}}$"}, None),
    "Origin": (
        {"enum": [SETTINGS.allowed_origins[0]]},
        (
            ("post", "/auth/channel"),
            ("post", "/auth/user"),
            ("get", "/auth/token"),
            ("post", "/auth/token"),
            ("get", "/v1/stream"),
        ),
    ),
}


def _with_headers(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the document in which each operation declares the HEADERS it reads."""
    fuzzed = copy.deepcopy(document)
    for header, (well_formed, where) in HEADERS.items():
        for path, methods in fuzzed["paths"].items():
            for method, operation in methods.items():
                if where is not None and (method, path) not in where:
                    continue
                parameters = [
                    p
                    for p in operation.get("parameters", [])
                    if not (p["in"] == "header" and p["name"].lower() == header.lower())
                ]
                schema = {"type": "string", **well_formed}
                parameters.append(
                    {"name": header, "in": "header", "required": False, "schema": schema}
                )
                operation["parameters"] = parameters
    return fuzzed


FUZZ_DOCUMENT = _with_headers(DOCUMENT)


def _behind_a_proxy(app: ASGIApp) -> ASGIApp:
    """The app as uvicorn would hand it a request from 127.0.0.1, the one trusted proxy hop."""

    async def from_loopback(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "client": ("127.0.0.1", 50000)}
        await app(scope, receive, send)

    return from_loopback


def _modes() -> list[Any]:
    """(method, path, mode) for every operation: positive always; negative where the operation
    takes a body, a query or a header parameter (a lone path string has no negative form);
    anchored where a path parameter gates the rest."""
    params: list[Any] = []
    for path, methods in FUZZ_DOCUMENT["paths"].items():
        for method, operation in methods.items():
            locations = {p["in"] for p in operation.get("parameters", [])}
            modes = ["positive"]
            if "requestBody" in operation or locations & {"query", "header"}:
                modes.append("negative")
            if any(p["name"] in ANCHORS for p in operation.get("parameters", [])):
                modes.append("anchored")
            label = f"{method.upper()} {path}"
            params.extend(pytest.param(method, path, m, id=f"{label} {m}") for m in modes)
    return params


@pytest.fixture
def schema() -> Iterator[schemathesis.BaseSchema]:
    """FUZZ_DOCUMENT, its calls sent in-process to a relay of this test's own.

    Schemathesis ends an ASGI app's lifespan after every test, and a relay whose lifespan ended
    is drained for good (publishes and streams answer 503): one relay per test, as one process
    per lifespan."""
    app = create_app(SETTINGS)
    # The same epoch as the relay the document came from: Last-Event-IDs it generates resume here.
    app.state.relay.provider.hub.epoch = EPOCH
    config = schemathesis.Config.from_dict({"max-stream-events": 1})
    loaded = schemathesis.openapi.from_dict(FUZZ_DOCUMENT, config=config)
    loaded.app = _behind_a_proxy(app)
    try:
        yield loaded
    finally:
        asgi.shutdown_lifespans()  # the relay's shutdown (closes the provider and the store)


def check(case: Case[Any], response: Response) -> None:
    """The fuzzing invariants for one answer."""
    where = f"{case.operation.label}: {case.as_curl_command()}"
    status = response.status_code
    for secret in SECRETS:
        assert secret not in response.text, f"a secret in the answer to {where}"
    if status < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM, f"{status} {content_type!r} from {where}"
    body = orjson.loads(response.content)
    assert isinstance(body, dict), where
    assert isinstance(body.get("type"), str), where
    assert body["type"].startswith(PROBLEM_PREFIX), where
    assert isinstance(body.get("title"), str), where
    assert body["title"], where
    assert body.get("status") == status, where
    if status >= 500:
        assert (status, body["type"]) == (501, PROBLEM_PREFIX + "not-supported"), (
            f"{status} {body} from {where}"
        )


@pytest.mark.parametrize(("method", "path", "mode"), _modes())
def test_every_answer_is_a_known_status_and_every_error_a_problem(
    schema: schemathesis.BaseSchema, method: str, path: str, mode: str
) -> None:
    operation: APIOperation[Any, Any, Any, Any] = schema[path][method.upper()]
    if mode == "anchored":
        fixed = {k: v for k, v in ANCHORS.items() if k in path}
        cases = operation.as_strategy(path_parameters=fixed)
    else:
        cases = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=cases, credential=st.sampled_from(sorted(CREDENTIALS)))
    def run(case: Case[Any], credential: str) -> None:
        response = case.call(headers=CREDENTIALS[credential], timeout=5)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        check(case, response)

    run()
    assert sum(seen.values()) >= 1, "no case was sent"


def _header_targets() -> list[Any]:
    return [
        pytest.param(header, method, path, id=f"{header} {method.upper()} {path}")
        for header, (_, where) in HEADERS.items()
        for method, path in where or (("get", "/health"), ("post", "/v1/events"))
    ]


@pytest.mark.parametrize(("header", "method", "path"), _header_targets())
def test_the_headers_the_relay_reads_are_generated(
    schema: schemathesis.BaseSchema, header: str, method: str, path: str
) -> None:
    """Positive cases carry each header well formed, negative ones malformed."""
    operation: APIOperation[Any, Any, Any, Any] = schema[path][method.upper()]
    well_formed = HEADERS[header][0]
    sent: dict[bool, list[str]] = {True: [], False: []}
    for mode in ("positive", "negative"):
        cases = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

        @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None)
        @given(case=cases)
        def draw(case: Case[Any]) -> None:
            headers: dict[str, str] = dict(case.headers or {})
            if header in headers:
                sent[_matches(well_formed, headers[header])].append(headers[header])

        draw()
    assert sent[True], f"no well-formed {header} for {method.upper()} {path}"
    assert sent[False], f"no malformed {header} for {method.upper()} {path}"


def _matches(schema: dict[str, Any], value: str) -> bool:
    if "enum" in schema:
        return value in schema["enum"]
    return re.search(schema["pattern"], value) is not None


def test_operation_ids_are_unique() -> None:
    ids = [
        operation["operationId"]
        for methods in DOCUMENT["paths"].values()
        for operation in methods.values()
    ]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


# The HTTP rows of ARCHITECTURE.md's public interface (the WebSocket is not an OpenAPI operation).
PUBLIC_INTERFACE = {
    ("GET", "/health"),
    ("POST", "/auth/channel"),
    ("POST", "/auth/user"),
    ("GET", "/auth/token"),
    ("POST", "/auth/token"),
    ("POST", "/v1/events"),
    ("POST", "/v1/batch"),
    ("GET", "/v1/channels/{channel}/members"),
    ("GET", "/v1/channels/{channel}/messages"),
    ("POST", "/v1/webhooks/{provider}"),
    ("GET", "/v1/stream"),
}


def test_the_public_interface_is_in_the_document() -> None:
    """Fuzzing follows the document: a public route missing from it would never be fuzzed."""
    documented = {(m.upper(), p) for p, ms in DOCUMENT["paths"].items() for m in ms}
    assert documented >= PUBLIC_INTERFACE, PUBLIC_INTERFACE - documented
