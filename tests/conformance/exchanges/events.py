"""Exchanges about events: client events, sign-in and events for a user, server publishes."""

from __future__ import annotations

from typing import Any, Final

from tests.conformance.frames import (
    ANN,
    BOB,
    CHAT,
    NEWS,
    ROOM,
    client_event,
    error,
    event,
    join,
    pair,
    refused,
    soketi_error,
    succeeded,
)
from tests.conformance.patterns import (
    ANY,
    Chan,
    Json,
    SignedUserData,
)
from tests.conformance.script import (
    Closed,
    Connect,
    Deviation,
    Exchange,
    Expect,
    Publish,
    Quiet,
    Send,
    Signin,
    Step,
    Subscribe,
    ToUser,
    steps,
)
from tests.conformance.servers import POLICY_ON_SOCKETS, PUSHER_HTTP, REST

SOKETI_DATA_AS_SENT: Final = (
    "soketi forwards a client event's data as the sender wrote it (an object here); the relays "
    "send it JSON-encoded, as the data of every server event is; pusher-js decodes either"
)
SOKETI_SILENT: Final = (
    "soketi drops a client event from a socket not subscribed to the channel without a word "
    "(ws-handler.js handleClientEvent); the relays say why"
)
SOKETI_TOO_LARGE: Final = "The event data should be less than 10 KB."
SOKETI_RATE: Final = "The rate limit for sending client events exceeded the quota."
RATE_LIMIT: Final = 10  # client events per second and socket, Pusher's limit
TOO_LARGE: Final = "x" * 11_000  # over Pusher's 10 KB of event data
ELEVENTH: Final = client_event(CHAT, "client-tick", {"n": 1})
ELEVENTH_TOO_LARGE: Final = client_event(CHAT, "client-big", TOO_LARGE)


# -- client events ------------------------------------------------------------------------------
def _on_public(outcome: tuple[Step, ...]) -> tuple[Step, ...]:
    return steps(pair(NEWS), Send("a", client_event(NEWS, "client-hello", {"n": 1})), outcome)


def _on_private(data: Any) -> tuple[Step, ...]:
    return steps(
        pair(CHAT, ANN, BOB),
        Send("a", client_event(CHAT, "client-typing", {"on": True})),
        Expect("b", event(CHAT, "client-typing", data)),
        Quiet("a"),  # never echoed to the sender
    )


def _on_presence(data: Any) -> tuple[Step, ...]:
    return steps(
        Connect("a"),
        Connect("b"),
        join("a", ROOM, ANN),
        join("b", ROOM, BOB),
        Expect("a", {"event": "pusher_internal:member_added", "channel": ROOM, "data": ANY}),
        Send("b", client_event(ROOM, "client-wave", {"hi": 1})),
        Expect("a", event(ROOM, "client-wave", data, user_id="bob")),
        Quiet("b"),
    )


def _too_large(answer: dict[str, Any]) -> tuple[Step, ...]:
    return steps(
        pair(CHAT, ANN, BOB),
        Send("a", client_event(CHAT, "client-big", TOO_LARGE)),
        Expect("a", answer),
        Quiet("b"),
    )


def _paced(data: Any) -> tuple[Step, ...]:
    # Ten client events, each sent once b has the one before: API Gateway runs a socket's frames
    # concurrently, and its per-second counter refuses some of a concurrent burst wrongly
    # (providers/apigateway/store.py count_client_event); paced, every server counts the same.
    tick = client_event(CHAT, "client-tick", {"n": 1})
    return (Send("a", tick), Expect("b", event(CHAT, "client-tick", data))) * RATE_LIMIT


def _over_rate(last: dict[str, Any], answer: dict[str, Any], data: Any) -> tuple[Step, ...]:
    return steps(
        pair(CHAT, ANN, BOB),
        _paced(data),
        Send("a", last),
        Expect("a", answer),
        Quiet("a"),
        Quiet("b"),
    )


def _unsubscribed(channel: Chan, answer: tuple[Step, ...]) -> tuple[Step, ...]:
    return steps(
        Connect("a"), Send("a", client_event(channel, "client-hello", {"n": 1})), answer, Quiet("a")
    )


NOT_SUBSCRIBED: Final = error("not subscribed to that channel")
PRIVATE_ONLY: Final = error("only for private and presence channels")

CLIENT_EVENTS = (
    Exchange(
        "a client event on a public channel is refused",
        _on_public((Expect("a", PRIVATE_ONLY), Quiet("b"))),
        deviations={
            "soketi": Deviation(
                "soketi forwards client events on any channel the sender joined, public ones too"
                " (ws-handler.js handleClientEvent checks no channel type); Pusher refuses them",
                _on_public((Quiet("a"), Expect("b", event(NEWS, "client-hello", {"n": 1})))),
            )
        },
    ),
    Exchange(
        "a client event on a private channel reaches the others, not the sender",
        _on_private(Json({"on": True})),
        deviations={"soketi": Deviation(SOKETI_DATA_AS_SENT, _on_private({"on": True}))},
    ),
    Exchange(
        "a client event on a presence channel names its sender's user_id",
        _on_presence(Json({"hi": 1})),
        deviations={"soketi": Deviation(SOKETI_DATA_AS_SENT, _on_presence({"hi": 1}))},
    ),
    Exchange(
        "an event without the client- prefix is ignored",
        steps(
            pair(CHAT, ANN, BOB),
            Send("a", client_event(CHAT, "typing", {"on": True})),
            Quiet("a"),
            Quiet("b"),
        ),
    ),
    Exchange(
        "a client event over 10 KB is refused",
        _too_large(error("limit is 10240")),
        deviations={
            "soketi": Deviation(
                "soketi's refusal has code 4301 and names the channel",
                _too_large(soketi_error(CHAT, SOKETI_TOO_LARGE)),
            )
        },
    ),
    Exchange(
        "the 11th client event within a second is refused with 4301",
        _over_rate(ELEVENTH, error("rate limit", 4301), Json({"n": 1})),
        deviations={
            "soketi": Deviation(
                f"soketi's refusal names the channel; {SOKETI_DATA_AS_SENT}",
                _over_rate(ELEVENTH, soketi_error(CHAT, SOKETI_RATE), {"n": 1}),
            )
        },
    ),
    Exchange(
        # The rate is counted last: a refused event uses none of it (soketi too checks the size
        # first, ws-handler.js handleClientEvent).
        "a too large 11th client event within a second is refused for its size, not the rate",
        _over_rate(ELEVENTH_TOO_LARGE, error("limit is 10240"), Json({"n": 1})),
        deviations={
            "soketi": Deviation(
                f"soketi's refusal has code 4301 and names the channel; {SOKETI_DATA_AS_SENT}",
                _over_rate(ELEVENTH_TOO_LARGE, soketi_error(CHAT, SOKETI_TOO_LARGE), {"n": 1}),
            )
        },
    ),
    Exchange(
        "a client event on a private channel before subscribing is refused",
        _unsubscribed(CHAT, (Expect("a", NOT_SUBSCRIBED),)),
        deviations={"soketi": Deviation(SOKETI_SILENT, _unsubscribed(CHAT, ()))},
    ),
    Exchange(
        # The channel's type is checked before the subscription (docs/providers/pusher-protocol.md)
        "a client event on a public channel before subscribing is refused for the channel type",
        _unsubscribed(NEWS, (Expect("a", PRIVATE_ONLY),)),
        deviations={"soketi": Deviation(SOKETI_SILENT, _unsubscribed(NEWS, ()))},
    ),
    Exchange(
        "a client event whose data does not fit the policy's JSON Schema is refused",
        steps(
            pair(CHAT, ANN, BOB),
            Send("a", client_event(CHAT, "client-order", {"note": "no id"})),
            Quiet("b"),
            Expect("a", error("does not match the schema")),
            Send("a", client_event(CHAT, "client-order", {"id": 7})),
            Expect("b", event(CHAT, "client-order", Json({"id": 7}))),
        ),
        needs=frozenset({POLICY_ON_SOCKETS}),
    ),
)


# -- sign-in ------------------------------------------------------------------------------------
OWN = "#server-to-user-ann"
OTHERS = "#server-to-user-bob"


def _signin(data: Any) -> tuple[Step, ...]:
    return (
        Connect("a"),
        Send("a", Signin(ANN)),
        Expect("a", {"event": "pusher:signin_success", "data": data}),
        *join("a", OWN),
        ToUser(ANN, "note", {"n": 1}),
        Expect("a", event(OWN, "note", Json({"n": 1}))),
    )


def _forged_signin(outcome: Step) -> tuple[Step, ...]:
    answer = {"event": "pusher:error", "data": {"code": 4009, "message": ANY}}
    return (Connect("a"), Send("a", Signin(ANN, forged=True)), Expect("a", answer), outcome)


def _others_channel(answer: dict[str, Any]) -> tuple[Step, ...]:
    return (
        Connect("a"),
        Send("a", Signin(ANN)),
        Expect("a", {"event": "pusher:signin_success", "data": ANY}),
        Send("a", Subscribe(OTHERS)),
        Expect("a", answer),
    )


SOKETI_SIGNIN_DATA: Final = {"user_data": SignedUserData("a"), "auth": ANY}

SIGNIN = (
    Exchange(
        "pusher:signin succeeds, then events sent to the user arrive",
        _signin(Json({"user_data": SignedUserData("a")})),
        deviations={
            "soketi": Deviation(
                "soketi's signin_success echoes the signin's data, auth included, as an object",
                _signin(SOKETI_SIGNIN_DATA),
            )
        },
    ),
    Exchange(
        "pusher:signin with a forged signature is refused with 4009, the socket kept",
        _forged_signin(Quiet("a")),
        deviations={
            "soketi": Deviation(
                "soketi also closes the socket with 4009", _forged_signin(Closed("a", 4009))
            )
        },
    ),
    Exchange(
        "another user's #server-to-user- channel is refused with 403",
        _others_channel(refused(OTHERS, "AuthError", 403)),
        deviations={
            "soketi": Deviation(
                "soketi treats #server-to-user- channels as public ones: anyone may join them",
                _others_channel(succeeded(OTHERS)),
            )
        },
    ),
)


# -- server publishes ---------------------------------------------------------------------------
def _published(via: str) -> Exchange:
    return Exchange(
        f"a server event published over {via} arrives with its data as a string",
        steps(
            Connect("a"),
            join("a", NEWS),
            Publish(NEWS, "update", {"n": 1}, via=via),
            Expect("a", event(NEWS, "update", Json({"n": 1}))),
            Publish(NEWS, "update", "plain text", via=via),
            Expect("a", event(NEWS, "update", "plain text")),
        ),
        needs=frozenset({via}),
    )


PUBLISHING = (
    _published(REST),
    _published(PUSHER_HTTP),
    Exchange(
        "a server event published with a socket_id skips that socket",
        steps(
            pair(NEWS),
            Publish(NEWS, "update", {"n": 2}, exclude="a"),
            Expect("b", event(NEWS, "update", Json({"n": 2}))),
            Quiet("a"),
        ),
    ),
)

EXCHANGES: Final = (*CLIENT_EVENTS, *SIGNIN, *PUBLISHING)
