"""Logging set-up: plain lines on a terminal, JSON lines elsewhere (Lambda, containers)."""

from __future__ import annotations

import logging
import sys

import orjson


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class _UvicornConnectionLines(logging.Filter):
    """Drop uvicorn's per-WebSocket lines: they print the query string, where a token may be.

    The relay's own access log (app.middleware.Front) records every request without it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not ('"WebSocket ' in message or message in ("connection open", "connection closed"))


def configure(level: str, *, json_lines: bool | None = None) -> None:
    """Route the relay's logs to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(_UvicornConnectionLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
