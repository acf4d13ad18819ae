"""AWS Lambda entry point of the HTTP API: Mangum around the same FastAPI app as `relay serve`.

Everything is built on the first invocation and kept for the warm ones that follow: the secrets
read from SSM Parameter Store, the settings, the Relay (its provider's pooled connections), the
app, and one event loop that those connections belong to. Mangum runs with lifespan="off" (it
would otherwise start and stop the app on every invocation). The API Gateway WebSocket handlers
(app/lambda_websocket.py) share this runtime.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import os
import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from core import aws
from core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

    from fastapi import FastAPI

    from app.relay import Relay
    from core.settings import Settings

T = TypeVar("T")

# Parameters directly under RELAY_SSM_PATH whose names look like environment variables become
# environment variables: /realtime-relay/prod/RELAY_APP_SECRET -> RELAY_APP_SECRET.
SSM_PATH_VARIABLE = "RELAY_SSM_PATH"
VENDOR_VARIABLE = "RELAY_VENDOR_DIR"


def _vendor_path() -> None:
    # The deployment package carries its dependencies in a folder of its own (built for the
    # Lambda runtime's Python): put it first on the path before anything imports them.
    folder = os.environ.get(VENDOR_VARIABLE)
    if folder and os.path.isdir(folder) and folder not in sys.path:
        sys.path.insert(0, folder)


_vendor_path()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Build without the cyclic garbage collector, then freeze what was built.

    A cold start imports FastAPI, pydantic and the relay: some 80,000 tracked objects, over
    which the collector would run its full (oldest-generation) pass several times, about 75 ms
    of a 700 ms cold start here (bench/README.md). Those objects live as long as the
    container, so after the build `gc.freeze()` moves them where later collections never walk
    them (shorter pauses on warm invocations too). What the build left as cyclic garbage stays
    allocated: a bounded, one-time cost.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()  # only a build that succeeded: a failed one is retried and would pile up
    finally:
        if enabled:
            gc.enable()


def load_ssm_parameters(path: str, *, client: Any = None) -> list[str]:
    """Copy the SecureString (or String) parameters under `path` into os.environ; return the
    names set. Values never reach a log line."""
    if client is None:
        client = aws.client("ssm")
    names: list[str] = []
    paginator = client.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=path, Recursive=False, WithDecryption=True):
        for parameter in page.get("Parameters", []):
            name = str(parameter["Name"]).rsplit("/", 1)[-1]
            if name.isidentifier() and name.upper() == name:
                os.environ[name] = str(parameter["Value"])
                names.append(name)
    return sorted(names)


class LambdaRuntime:
    """What one Lambda container builds once: settings, relay, app, adapter and event loop."""

    def __init__(self, relay: Relay | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        # Mangum asks for the current loop; it must be this one, which the pooled
        # connections of the provider belong to across invocations.
        asyncio.set_event_loop(self.loop)
        if relay is None:
            relay = _build_relay()
        self.relay = relay
        self._app: FastAPI | None = None
        self._adapter: Any = None

    @property
    def app(self) -> FastAPI:
        """The FastAPI app (built on the first HTTP invocation only)."""
        if self._app is None:
            from app.main import create_app

            self._app = create_app(relay=self.relay, emf=self.relay.settings.metrics)
        return self._app

    def http(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Serve one API Gateway HTTP API (or REST, ALB) event."""
        if self._adapter is None:
            with collector_paused():
                from mangum import Mangum

                self._adapter = Mangum(self.app, lifespan="off")
        asyncio.set_event_loop(self.loop)
        response: dict[str, Any] = self._adapter(event, context)
        measured = self.app.state.metrics
        if measured is not None:
            measured.flush()  # the invocation's EMF lines, for CloudWatch
        return response

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the container's loop."""
        asyncio.set_event_loop(self.loop)
        return self.loop.run_until_complete(coroutine)


def check_package(settings: Settings) -> None:
    """Refuse to start when the package lacks what the settings need."""
    if settings.jwks_url and importlib.util.find_spec("cryptography") is None:
        # The package was built without `--jwks` (docs/deploy-lambda.md): RS256/ES256 tokens
        # could not be verified, and every user would be refused with a vague 401.
        raise ConfigurationError(
            "RELAY_JWKS_URL: this package has no cryptography to verify RS256/ES256 tokens; "
            "build it with --jwks"
        )


def _build_relay() -> Relay:
    from app import logs
    from app.relay import Relay
    from core.settings import warn_about_dev_defaults
    from providers.registry import load_settings_with_provider

    path = os.environ.get(SSM_PATH_VARIABLE, "").strip()
    if path:
        load_ssm_parameters(path)
    settings = load_settings_with_provider()
    check_package(settings)
    logs.configure(settings.log_level, json_lines=True)
    warn_about_dev_defaults(settings)
    # botocore tells at INFO where it found each endpoint and credential, on every cold start.
    logging.getLogger("botocore").setLevel(max(logging.WARNING, logging.getLogger().level))
    relay = Relay.build(settings)
    if settings.webhook_url:  # imported only then: the cold start of a relay without them
        from app.webhooks import install_on_lambda

        install_on_lambda(settings, store=relay.store)
    return relay


_runtime: LambdaRuntime | None = None
_lock = threading.Lock()


def runtime() -> LambdaRuntime:
    """The container's runtime, built on first use."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                with collector_paused():
                    _runtime = LambdaRuntime()
    return _runtime


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The HTTP API function."""
    return runtime().http(event, context)
