"""Exchanges about sign-in watchlists (issue 14): a signed-in connection hears which of the users
its user_data watches are online, then `online` and `offline` as their first connection signs in
and their last one ends. soketi 1.6 implements no watchlists; the relays both do."""

from __future__ import annotations

from typing import Any, Final

from tests.conformance.patterns import ANY, Json, User
from tests.conformance.script import Close, Connect, Exchange, Expect, Quiet, Send, Signin, steps
from tests.conformance.servers import WATCHLISTS

# Users of these exchanges only: whether one is online must not depend on other exchanges.
WATCHED: Final = User("watched-bob", "Bob")
LATE: Final = User("watched-cid", "Cid")
WATCHER: Final = User("watcher-ann", "Ann", watchlist=(WATCHED.id, LATE.id))


def signed_in(client: str) -> Expect:
    return Expect(client, {"event": "pusher:signin_success", "data": ANY})


def watchlist(name: str, *users: User) -> dict[str, Any]:
    """pusher_internal:watchlist_events as pusher-js's watchlist reads it: no channel."""
    events = [{"name": name, "user_ids": [u.id for u in users]}]
    return {"event": "pusher_internal:watchlist_events", "data": Json({"events": events})}


EXCHANGES: Final = (
    Exchange(
        "a watchlist hears who is online at sign-in, then each user's first and last connection",
        steps(
            Connect("bob"),
            Send("bob", Signin(WATCHED)),
            signed_in("bob"),
            Connect("ann"),
            Send("ann", Signin(WATCHER)),
            signed_in("ann"),
            Expect("ann", watchlist("online", WATCHED)),
            Connect("cid"),
            Send("cid", Signin(LATE)),
            signed_in("cid"),
            Expect("ann", watchlist("online", LATE)),
            Connect("cid2"),
            Send("cid2", Signin(LATE)),
            signed_in("cid2"),
            Quiet("ann"),  # a second connection of Cid's is no news
            Close("bob"),
            Expect("ann", watchlist("offline", WATCHED)),
            Quiet("cid"),  # nobody watches Ann
        ),
        needs=frozenset({WATCHLISTS}),
    ),
)
