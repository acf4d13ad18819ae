"""Lambda entry point of AWS AppSync Events' invocations: the Event API's Lambda authorizer and
its namespace's onSubscribe/onPublish handlers (a Lambda data source, DIRECT), in one function.

It shares the container's runtime with the HTTP API (app.lambda_handler.runtime: settings, the
relay's gates, one event loop) and never builds the FastAPI app: a cold start here imports the
relay's core and this provider's decisions only. Failures are closed: an authorizer that cannot
decide denies, a handler that cannot decide refuses. serverless.yml names it
`app.lambda_appsync.handler`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar, cast

# First of the relay's imports: it puts the package's vendored dependencies on sys.path.
from app.lambda_handler import runtime
from providers.appsync import authorizer, handlers

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from app.relay import Relay
    from providers.appsync.provider import AppSyncProvider
    from providers.appsync.settings import AppSyncSettings

T = TypeVar("T")

log = logging.getLogger(__name__)


class UnauthorizedException(Exception):  # the name is AppSync's contract
    """AppSync refuses the subscribe or publish (403) when the handler fails with this type."""


def handler(event: dict[str, Any], context: Any) -> Any:
    """The authorizer's answer, or the handler's; what it cannot decide it refuses."""
    if authorizer.is_authorizer_request(event):
        try:
            return _authorize(event)
        except Exception:
            log.exception("appsync authorizer failed: denied")
            return authorizer.DENIED
    if not handlers.is_handler_event(event):
        log.warning("appsync: an invocation that is neither an authorizer nor a handler event")
        raise UnauthorizedException("not an AppSync Events invocation")
    try:
        return _handle(event)
    except handlers.Refused as exc:
        raise UnauthorizedException(str(exc)) from None
    except Exception:
        log.exception("appsync handler failed: refused")
        raise UnauthorizedException("the relay could not decide") from None


def _run(work: Callable[[Relay, AppSyncSettings], Coroutine[Any, Any, T]]) -> T:
    """Run one decision on the container's loop, with the relay and the appsync settings."""
    rt = runtime()
    provider = rt.relay.provider.part("appsync")
    if provider is None:
        raise TypeError("neither RELAY_PROVIDER nor RELAY_SECONDARY_PROVIDER is 'appsync'")
    return rt.run(work(rt.relay, cast("AppSyncProvider", provider).settings))


def _authorize(event: dict[str, Any]) -> dict[str, Any]:
    return _run(
        lambda relay, settings: authorizer.authorize(
            event,
            authenticator=relay.authenticator,
            authorizer=relay.authorizer,
            namespace=settings.namespace,
            ttl_seconds=settings.authorizer_ttl_seconds,
        )
    )


def _handle(event: dict[str, Any]) -> dict[str, Any] | None:
    return _run(
        lambda relay, settings: handlers.handle(
            event,
            authorizer=relay.authorizer,
            schemas=relay.schemas,
            namespace=settings.namespace,
            api_key_is_backend=settings.api_key is not None,
        )
    )
