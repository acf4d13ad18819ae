"""Exchanges about the socket itself: the connection, subscriptions, presence."""

from __future__ import annotations

from typing import Any, Final

from tests.conformance.frames import (
    ANN,
    BOB,
    CHAT,
    MEMBERS,
    NEWS,
    ROOM,
    error,
    event,
    join,
    pair,
    refused,
    succeeded,
    unsubscribe,
)
from tests.conformance.patterns import (
    ANY,
    Chan,
    Json,
    Regex,
    Unordered,
)
from tests.conformance.script import (
    Close,
    Connect,
    Deviation,
    Exchange,
    Expect,
    Open,
    Publish,
    Quiet,
    Send,
    Step,
    Subscribe,
    steps,
)
from tests.conformance.servers import POLICY_ON_SOCKETS


# -- connection ---------------------------------------------------------------------------------
def _established(activity_timeout: int) -> tuple[Step, ...]:
    data = {"socket_id": Regex(r"^\d+\.\d+$"), "activity_timeout": activity_timeout}
    return (Open("a"), Expect("a", {"event": "pusher:connection_established", "data": Json(data)}))


def _pong(data: Any) -> tuple[Step, ...]:
    return (
        Connect("a"),
        Send("a", {"event": "pusher:ping", "data": {}}),
        Expect("a", {"event": "pusher:pong", "data": data}),
    )


def _invalid_json(answer: tuple[Step, ...]) -> tuple[Step, ...]:
    return steps(Connect("a"), Send("a", "this is not JSON"), answer, Quiet("a"))


CONNECTION = (
    Exchange(
        "connection_established carries the socket id and Pusher's activity_timeout",
        _established(120),
        deviations={
            "soketi": Deviation(
                "soketi's activity_timeout is 30, hard-coded (ws-handler.js onOpen); Pusher's is "
                "120, the relays' default",
                _established(30),
            )
        },
    ),
    Exchange(
        "pusher:ping is answered by pusher:pong",
        _pong("{}"),
        deviations={"soketi": Deviation("soketi's pong carries data as an object, {}", _pong({}))},
    ),
    Exchange(
        "a frame that is not JSON is answered by pusher:error",
        _invalid_json((Expect("a", error("^Invalid JSON")),)),
        deviations={
            "soketi": Deviation("soketi ignores a frame it cannot parse", _invalid_json(()))
        },
    ),
    Exchange(
        "an unknown event is ignored",
        (Connect("a"), Send("a", {"event": "pusher:nonsense", "data": {}}), Quiet("a")),
    ),
)


# -- subscriptions ------------------------------------------------------------------------------
def _subscribe_public(data: dict[str, Any]) -> tuple[Step, ...]:
    frame = {"event": "pusher_internal:subscription_succeeded", "channel": NEWS, **data}
    return (Connect("a"), Send("a", Subscribe(NEWS)), Expect("a", frame), Quiet("a"))


def _duplicate(answer: tuple[Step, ...]) -> tuple[Step, ...]:
    return steps(
        Connect("a"),
        join("a", NEWS),
        Send("a", Subscribe(NEWS)),
        answer,
        Quiet("a"),
        Publish(NEWS, "tick", {"n": 1}),
        Expect("a", event(NEWS, "tick", Json({"n": 1}))),  # once: one subscription
        Quiet("a"),
    )


def _refused_name(channel: Chan | str, answer: dict[str, Any]) -> tuple[Step, ...]:
    return (Connect("a"), Send("a", Subscribe(channel)), Expect("a", answer), Quiet("a"))


def _roster(*members: tuple[str, str]) -> Json:
    ids = Unordered(tuple(user_id for user_id, _ in members))
    hash_ = {user_id: {"name": name} for user_id, name in members}
    return Json({"presence": {"ids": ids, "hash": hash_, "count": len(members)}})


LONG_NAME: Final = "n" * 165  # Pusher's limit is 164 characters
BAD_NAME: Final = "bad channel!"

SUBSCRIPTIONS = (
    Exchange(
        "subscribing to a public channel succeeds with data '{}'",
        _subscribe_public({"data": "{}"}),
        deviations={
            "soketi": Deviation(
                "soketi's subscription_succeeded on a non-presence channel has no data",
                _subscribe_public({}),
            )
        },
    ),
    Exchange(
        "a duplicate subscribe is ignored",
        _duplicate(()),
        deviations={
            "soketi": Deviation(
                "soketi joins again and confirms again (the subscription stays single)",
                _duplicate((Expect("a", succeeded(NEWS)),)),
            )
        },
    ),
    Exchange(
        "after pusher:unsubscribe, nothing more arrives",
        steps(
            pair(NEWS),
            Send("a", unsubscribe(NEWS)),
            Quiet("a"),
            Publish(NEWS, "tick", {"n": 1}),
            Expect("b", event(NEWS, "tick", Json({"n": 1}))),
            Quiet("a"),
        ),
    ),
    Exchange(
        "a private subscription signed for the socket succeeds",
        steps(Connect("a"), join("a", CHAT, ANN), Quiet("a")),
    ),
    Exchange(
        "a private subscription with a forged signature is refused with 401",
        (
            Connect("a"),
            Send("a", Subscribe(CHAT, forged=True)),
            Expect("a", refused(CHAT, "AuthError", 401)),
            Quiet("a"),
        ),
    ),
    Exchange(
        "a private subscription signed for another socket is refused with 401",
        (
            Connect("a"),
            Connect("b"),
            Send("a", Subscribe(CHAT, as_user=ANN, signed_for="b")),
            Expect("a", refused(CHAT, "AuthError", 401)),
            Quiet("a"),
        ),
    ),
    Exchange(
        # 401 where a login would help, as /auth/channel answers (docs/providers/pusher-protocol.md)
        "a public channel the policy closes to anonymous sockets is refused with 401",
        _refused_name(MEMBERS, refused(MEMBERS, "AuthError", 401)),
        needs=frozenset({POLICY_ON_SOCKETS}),
    ),
    Exchange(
        "a channel name over 164 characters is refused",
        _refused_name(LONG_NAME, refused(LONG_NAME, "InvalidChannel", 400, Regex("limit is 164"))),
        deviations={
            "soketi": Deviation(
                "soketi refuses with type LimitReached and a status of 4009",
                _refused_name(
                    LONG_NAME,
                    refused(
                        LONG_NAME,
                        "LimitReached",
                        4009,
                        "The channel name is longer than the allowed 164 characters.",
                    ),
                ),
            )
        },
    ),
    Exchange(
        "a channel name with characters Pusher does not allow is refused",
        _refused_name(
            BAD_NAME, refused(BAD_NAME, "InvalidChannel", 400, Regex("may contain only"))
        ),
        deviations={
            "soketi": Deviation(
                "soketi refuses with a status of 4009 and no type",
                _refused_name(
                    BAD_NAME,
                    {
                        "event": "pusher:subscription_error",
                        "channel": BAD_NAME,
                        "data": {
                            "error": Regex("^The channel name is not allowed"),
                            "status": 4009,
                        },
                    },
                ),
            )
        },
    ),
)


# -- presence -----------------------------------------------------------------------------------
PRESENCE = (
    Exchange(
        "presence: the roster, then member_added and member_removed for the others",
        (
            Connect("a"),
            Connect("b"),
            Send("a", Subscribe(ROOM, as_user=ANN)),
            Expect("a", {**succeeded(ROOM), "data": _roster(("ann", "Ann"))}),
            Send("b", Subscribe(ROOM, as_user=BOB)),
            Expect("b", {**succeeded(ROOM), "data": _roster(("ann", "Ann"), ("bob", "Bob"))}),
            Expect(
                "a",
                {
                    "event": "pusher_internal:member_added",
                    "channel": ROOM,
                    "data": Json({"user_id": "bob", "user_info": {"name": "Bob"}}),
                },
            ),
            Quiet("b"),  # no member_added about oneself
            Send("b", unsubscribe(ROOM)),
            Expect(
                "a",
                {
                    "event": "pusher_internal:member_removed",
                    "channel": ROOM,
                    "data": Json({"user_id": "bob"}),
                },
            ),
            Quiet("a"),
        ),
    ),
    Exchange(
        "presence: a member whose socket closes is removed",
        steps(
            Connect("a"),
            Connect("b"),
            join("a", ROOM, ANN),
            join("b", ROOM, BOB),
            Expect("a", {"event": "pusher_internal:member_added", "channel": ROOM, "data": ANY}),
            Close("b"),
            Expect("a", {"event": "pusher_internal:member_removed", "channel": ROOM, "data": ANY}),
        ),
    ),
)

EXCHANGES: Final = (*CONNECTION, *SUBSCRIPTIONS, *PRESENCE)
