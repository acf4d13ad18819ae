"""Exchanges about cache channels (issue 14): the last published event on subscribe, or
`pusher:cache_miss`. soketi implements them (ws-handler.js sendMissedCacheIfExists), so the
relays are held to its answers."""

from __future__ import annotations

from typing import Final

from tests.conformance.frames import ANN, event, succeeded
from tests.conformance.patterns import Chan, Json
from tests.conformance.script import (
    Connect,
    Exchange,
    Expect,
    Publish,
    Quiet,
    Send,
    Step,
    Subscribe,
    steps,
)

CACHED: Final = Chan("cache-scores")
PRIVATE_CACHED: Final = Chan("private-cache-desk")


def cache_miss(channel: Chan) -> dict[str, object]:
    """What a cache channel answers after the subscription when nothing was published."""
    return {"event": "pusher:cache_miss", "channel": channel}


def missed(client: str, channel: Chan) -> tuple[Step, ...]:
    """A new client subscribes to a cache channel nothing was published on."""
    return (
        Connect(client),
        Send(client, Subscribe(channel)),
        Expect(client, succeeded(channel)),
        Expect(client, cache_miss(channel)),
    )


EXCHANGES: Final = (
    Exchange(
        "a cache channel with nothing published answers cache_miss after the subscription",
        steps(missed("a", CACHED), Quiet("a")),
    ),
    Exchange(
        "a cache channel sends its last published event to each new subscriber",
        steps(
            missed("a", CACHED),
            Publish(CACHED, "score", {"home": 1}),
            Expect("a", event(CACHED, "score", Json({"home": 1}))),
            Publish(CACHED, "score", {"home": 2}),
            Expect("a", event(CACHED, "score", Json({"home": 2}))),
            Connect("b"),
            Send("b", Subscribe(CACHED)),
            Expect("b", succeeded(CACHED)),
            Expect("b", event(CACHED, "score", Json({"home": 2}))),
            Quiet("b"),
            Quiet("a"),
        ),
    ),
    Exchange(
        "a private cache channel keeps its last event too",
        steps(
            Connect("a"),
            Publish(PRIVATE_CACHED, "memo", {"text": "hi"}),
            Send("a", Subscribe(PRIVATE_CACHED, as_user=ANN)),
            Expect("a", succeeded(PRIVATE_CACHED)),
            Expect("a", event(PRIVATE_CACHED, "memo", Json({"text": "hi"}))),
        ),
    ),
)
