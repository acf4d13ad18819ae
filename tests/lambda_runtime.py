"""The Lambda container's runtime, swapped by tests: what a test of the Lambda handlers shares.

The container builds its runtime once (app.lambda_handler.runtime); a test installs its own, or
none so that the next invocation builds a fresh one, and closes the one it replaces."""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING

from app import lambda_handler

if TYPE_CHECKING:
    from app.lambda_handler import LambdaRuntime


def install(replacement: LambdaRuntime | None = None) -> None:
    """Close the current runtime and install another (or none); give what a cold build froze
    (app.lambda_handler.collector_paused) back to the collector."""
    with lambda_handler._lock:
        previous, lambda_handler._runtime = lambda_handler._runtime, replacement
    if previous is not None and previous is not replacement:
        _close(previous)
    gc.unfreeze()


def _close(runtime: LambdaRuntime) -> None:
    """Release the relay's connections and the loop (Lambda itself just freezes the container)."""
    try:
        runtime.loop.run_until_complete(runtime.relay.aclose())
        runtime.loop.run_until_complete(runtime.loop.shutdown_default_executor())
    finally:
        runtime.loop.close()
        asyncio.set_event_loop(None)
