"""The console's routes: the page, its files, and the three calls the public API lacks.

The key. The page is harmless without one: it holds no data and no secret. The backend key is
typed into the page once, kept in the tab's sessionStorage (gone with the tab, never sent to
another tab or site) and sent as `X-API-Key` by the page's own `fetch` calls: never in a URL
(which lands in logs and history) and never in a cookie (which the browser would attach to a
cross-site request: a header cannot be forged that way, so the API needs no CSRF defence). Every
call below but `defaults` answers only a backend key, through the relay's identity gate (failed
keys count against the address like any other) and the backend's rate budget.

Private and presence channels. A backend may already read every channel's members, occupancy
and history (core/authorizing.py), so the console signs its own socket's subscription to any
private or presence channel for the key's holder, as a backend signs its users' (the policy's
`subscribe` terms are for end users). On a presence channel this joins the roster, visibly, as
the member `relay-console`; the members panel asks `GET /v1/channels/{c}/members` instead, which
joins nothing. Encrypted channels are refused: the page has no decryption, and their shared secret
stays out of the browser.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from app.forms import read_fields
from app.relay import Relay, relay_of
from core.errors import BadRequest, Forbidden, NotFound, Unauthenticated
from core.provider import PresenceData, Provider
from core.settings import DEV_API_KEY
from core.validation import ChannelKind, channel_kind, validate_channel, validate_socket_id

STATIC = Path(__file__).resolve().parent / "static"
# The files the page loads; nothing else of the folder is served.
FILES = frozenset(
    {
        "console.js",
        "console.css",
        "icon.svg",
        "vendor/pusher.min.js",
        "vendor/pusher.min.js.LICENSE.txt",
        "vendor/pusher-js.LICENCE",
    }
)
# Scripts and styles from this origin only, no inline code; fetch and the WebSocket to this
# origin only ('self' covers ws: and wss: to it); no form posts anywhere, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
# Who the console is on a presence channel it watches.
MEMBER = PresenceData(user_id="relay-console", user_info={"name": "relay console"})

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def page() -> Response:
    """The console page."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


@router.get("/static/{name:path}")
async def static(name: str) -> Response:
    """One of the page's files."""
    if name not in FILES:
        raise NotFound("no such console file")
    media_type = mimetypes.guess_type(name)[0] or "text/plain"
    return FileResponse(STATIC / name, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/api/defaults")
async def defaults(request: Request, response: Response) -> dict[str, Any]:
    """The one call without a key: the development key to fill in, when the relay runs in
    development with it (a value the README publishes, so telling it tells nothing)."""
    settings = relay_of(request).settings
    in_use = any(k.get_secret_value() == DEV_API_KEY for k in settings.api_keys)
    response.headers["Cache-Control"] = "no-store"
    return {"development_key": DEV_API_KEY if in_use and settings.env == "development" else None}


@router.get("/api/config")
async def config(request: Request, response: Response) -> dict[str, Any]:
    """What the page's pusher-js needs, and the origins its socket must come from."""
    relay = await _backend(request, response)
    return {
        "app_key": relay.settings.app_key,
        "allowed_origins": list(relay.settings.origins),
        "member": MEMBER.user_id,
    }


@router.get("/api/channels")
async def channels(request: Request, response: Response) -> dict[str, Any]:
    """The occupied channels with their subscriber (and presence user) counts."""
    relay = await _backend(request, response)
    local = _local(relay)
    found = await relay.breaker.call(lambda: local.channels(""))
    return {
        "channels": [
            {"channel": c, "subscriptions": o.subscription_count, "users": o.user_count}
            for c, o in sorted(found.items())
        ]
    }


@router.post("/api/auth")
async def authorize(request: Request, response: Response) -> dict[str, str]:
    """The signature of the console socket's subscription to a private or presence channel
    (pusher-js channelAuthorization, from the page's customHandler)."""
    relay = await _backend(request, response)
    fields = await read_fields(request)
    socket_id = validate_socket_id(fields.get("socket_id"))
    channel = validate_channel(fields.get("channel_name"), relay.provider.limits)
    kind = channel_kind(channel)
    if kind is ChannelKind.PUBLIC:
        raise BadRequest("public channels need no authorization", channel=channel)
    if kind is ChannelKind.PRIVATE_ENCRYPTED:
        raise BadRequest("the console does not watch encrypted channels", channel=channel)
    presence = MEMBER if kind is ChannelKind.PRESENCE else None
    local = _local(relay)  # the console's socket is the local provider's, whatever the other
    return local.authorize_channel(socket_id=socket_id, channel=channel, presence=presence)


def _local(relay: Relay) -> Provider:
    """The local provider the console watches (mounted only where there is one)."""
    local = relay.provider.part("local")
    assert local is not None, "the console is mounted on the local provider only"
    return local


async def _backend(request: Request, response: Response) -> Relay:
    """The relay, once the caller proved to be a backend within its rate budget."""
    relay = relay_of(request)
    principal = await relay.identify(request)
    if principal.is_user:
        raise Forbidden("the console takes a backend key (RELAY_API_KEYS), not a user's token")
    if not principal.is_backend:
        raise Unauthenticated("send a backend key (RELAY_API_KEYS) as X-API-Key")
    await relay.limiter.check("publish", principal, relay.client_ip(request))
    response.headers["Cache-Control"] = "no-store"
    return relay
