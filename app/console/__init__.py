"""`/console`: a live view of the local relay in the browser, served by the relay itself.

The page is static (app/console/static: HTML, one script, one style sheet and pusher-js vendored
under static/vendor, so nothing comes from the internet and nothing is built). It opens its own
pusher-js connection to the relay and asks the relay's own API, with a backend key from
RELAY_API_KEYS sent as `X-API-Key`, for what it shows: the channels and their subscriber counts,
a presence channel's members (`GET /v1/channels/{c}/members`), the events on the channels it
watches, and publishes (`POST /v1/events`). routes.py has the page, its files and the little API
the relay's public one lacks.

Served where RELAY_CONSOLE says: `auto` (the default) when RELAY_ENV=development, `on` in any
environment, `off` never; and only on the local provider, whose sockets the page connects to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings


def enabled(settings: Settings) -> bool:
    """Whether this relay serves the console."""
    if "local" not in settings.providers or settings.console == "off":
        return False
    return settings.console == "on" or settings.env == "development"
