"""examples/policies/laravel.toml: Laravel's channel names, loaded as RELAY_POLICY_FILE loads it.

The explanations are checked as `relay policy explain` prints them (Explanation.render).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.policy import Action, Allow, AllowPresence, Deny, Policy
from core.principal import ANONYMOUS, Principal, PrincipalKind, user

LARAVEL = Path(__file__).resolve().parents[4] / "examples" / "policies" / "laravel.toml"
BACKEND = Principal(PrincipalKind.BACKEND, "laravel")
ANN = user("1", name="Ann")
BEN = user("2", name="Ben")
S, P, C, H = Action.SUBSCRIBE, Action.PUBLISH, Action.CLIENT_EVENT, Action.HISTORY


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_file(LARAVEL)


@pytest.mark.parametrize(
    ("principal", "action", "channel", "subscribed", "allowed"),
    [
        # The user's own channel (notifications): that user only; only a backend publishes.
        (ANN, S, "private-App.Models.User.1", False, True),
        (BEN, S, "private-App.Models.User.1", False, False),
        (ANONYMOUS, S, "private-App.Models.User.1", False, False),
        (ANN, H, "private-App.Models.User.1", False, True),
        (BEN, H, "private-App.Models.User.1", False, False),
        (BACKEND, P, "private-App.Models.User.1", False, True),
        (ANN, P, "private-App.Models.User.1", False, False),
        (ANN, C, "private-App.Models.User.1", False, True),
        (BEN, C, "private-App.Models.User.1", False, False),
        (ANONYMOUS, C, "private-App.Models.User.1", True, True),  # her other tab, not signed in
        # Encrypted: that user's own, or any user's on other names; never client events.
        (ANN, S, "private-encrypted-App.Models.User.1", False, True),
        (BEN, S, "private-encrypted-App.Models.User.1", False, False),
        (BEN, S, "private-encrypted-vault", False, True),
        (ANONYMOUS, C, "private-encrypted-vault", True, False),
        # Presence rooms: any signed-in user; members whisper.
        (BEN, S, "presence-chat.5", False, True),
        (ANONYMOUS, S, "presence-chat.5", False, False),
        (ANONYMOUS, C, "presence-chat.5", True, True),
        # Other private channels: any signed-in user; subscribers whisper.
        (BEN, S, "private-orders.5", False, True),
        (ANONYMOUS, S, "private-orders.5", False, False),
        (ANONYMOUS, C, "private-orders.5", True, True),
        (BACKEND, P, "private-orders.5", False, True),
        # Bare prefixes are not public channels; public channels are open, whisper-free.
        (ANN, S, "private-", False, False),
        (ANN, S, "presence-", False, False),
        (ANONYMOUS, S, "orders", False, True),
        (ANONYMOUS, H, "orders", False, True),
        (ANONYMOUS, C, "orders", True, False),
        (ANN, P, "orders", False, False),
    ],
)
def test_laravel_policy_decides(
    policy: Policy,
    principal: Principal,
    action: Action,
    channel: str,
    subscribed: bool,
    allowed: bool,
) -> None:
    decision = policy.decide(principal, action, channel, subscribed=subscribed)
    assert isinstance(decision, Allow | AllowPresence) is allowed, decision


def test_presence_members_show_their_name(policy: Policy) -> None:
    decision = policy.decide(ANN, S, "presence-chat.5")
    assert isinstance(decision, AllowPresence)
    assert (decision.user_id, dict(decision.user_info)) == ("1", {"name": "Ann"})


def test_explain_the_users_own_channel(policy: Policy) -> None:
    text = policy.explain(BEN, S, "private-App.Models.User.1").render()
    assert text == (
        "channel private-App.Models.User.1, action subscribe, principal user '2'\n"
        f"matched rule #1 private-App.Models.User.{{id}} ({LARAVEL}) with id='1'\n"
        "  user:{id} -> no: user '2' is not '1'\n"
        "DENY (403): rule private-App.Models.User.{id} does not grant subscribe to user '2': "
        "user '2' is not '1'"
    )


def test_explain_a_whisper_on_a_presence_room(policy: Policy) -> None:
    text = policy.explain(ANONYMOUS, C, "presence-chat.5", subscribed=True).render()
    assert text.splitlines()[1:] == [
        f"matched rule #4 presence-{{room}} ({LARAVEL}) with room='chat.5'",
        "  subscriber -> yes: the connection's subscription to the channel was authorized",
        "ALLOW: subscriber grants client_event to anonymous",
    ]


def test_explain_a_whisper_on_an_encrypted_channel(policy: Policy) -> None:
    explained = policy.explain(ANN, C, "private-encrypted-App.Models.User.1", subscribed=True)
    assert isinstance(explained.decision, Deny)
    assert explained.render().endswith(
        "DENY (403): rule private-encrypted-App.Models.User.{id} grants client_event to nobody"
    )


def test_every_rule_is_reached(policy: Policy) -> None:
    channels = [
        "private-App.Models.User.1",
        "private-encrypted-App.Models.User.1",
        "private-encrypted-vault",
        "presence-chat.5",
        "private-orders.5",
        "private-",
        "presence-",
        "orders",
    ]
    assert [policy.rule_for(c).index for c in channels] == list(range(1, 9))  # type: ignore[union-attr]
