"""`/docs`: Swagger UI from the relay's own files, and an OpenAPI schema of what this relay serves.

FastAPI's default page loads Swagger UI from a CDN; a relay on a machine with no internet, or
behind a strict proxy, showed a blank page. The assets come from the `swagger-ui-bundle` package
instead (installed with `relay serve`; left out of the Lambda bundles, where `/docs` says so and
points at `/openapi.json`). ReDoc, which only loads from a CDN, is off.

The schema lists the routes the configured provider answers: a route whose provider call the
provider does not implement (it would answer 501, core/provider.py) is served but not listed, so
`/docs` on `local` shows no `/auth/token`, and on `ably` no `/auth/channel`.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from core.errors import NotFound
from core.provider import Provider

if TYPE_CHECKING:
    from fastapi import FastAPI

ASSETS = "/docs/assets"
# The files the page loads: nothing else of the bundle is served.
ASSET_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})
# Routes that only answer when the provider implements the port method (else 501).
ROUTE_NEEDS = {
    "/auth/channel": "authorize_channel",
    "/auth/user": "authenticate_user",
    "/auth/token": "issue_token",
    "/v1/channels/{channel}": "occupancy",
    "/v1/channels/{channel}/members": "members",
    "/v1/users/{user_id}/events": "send_to_user",
    "/v1/users/{user_id}/terminate": "terminate_user",
    "/v1/webhooks/{provider}": "parse_webhook",
}


def serves(provider: Provider, method: str) -> bool:
    """Whether the provider implements the port method (rather than the port's NotSupported);
    for a pair, whether either of its two does."""
    return any(getattr(type(p), method) is not getattr(Provider, method) for p in provider.parts)


def list_only_served(app: FastAPI, provider: Provider) -> None:
    """Leave out of the schema the routes this provider would answer with 501."""
    unserved = {path for path, method in ROUTE_NEEDS.items() if not serves(provider, method)}
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path in unserved:
                schema["paths"].pop(path, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Serve `/docs` and its assets from this process (create the app with docs_url=None)."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        if _bundle() is None:
            return HTMLResponse(
                "<!doctype html><title>realtime-relay API</title><p>The interactive documentation "
                "is served by <code>relay serve</code>; the schema is at "
                '<a href="/openapi.json">/openapi.json</a>.</p>'
            )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        folder = _bundle()
        if folder is None or name not in ASSET_FILES:
            raise NotFound("no such documentation asset")
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {"Cache-Control": "public, max-age=86400"}
        return FileResponse(str(folder / name), media_type=media_type, headers=headers)


def _bundle() -> Path | None:
    try:
        from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]
    except ImportError:
        return None
    return Path(str(swagger_ui_path))
