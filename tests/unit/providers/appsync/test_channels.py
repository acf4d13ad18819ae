"""Relay channels as AppSync channel paths: dots are segments, the rest of AppSync's rule holds."""

from __future__ import annotations

import pytest

from core.errors import InvalidChannel
from providers.appsync import channels


@pytest.mark.parametrize(
    ("channel", "path"),
    [
        ("news", "relay/news"),
        ("private-user-42", "relay/private-user-42"),
        ("private-orders.1", "relay/private-orders/1"),
        ("private-App.Models.User.7", "relay/private-App/Models/User/7"),
    ],
)
def test_a_channel_maps_to_a_path_and_back(channel: str, path: str) -> None:
    assert channels.to_path("relay", channel) == path
    assert channels.from_path("relay", "/" + path) == channel
    assert channels.from_path("relay", path) == channel


@pytest.mark.parametrize(
    "channel",
    [
        "a_b",  # underscore: outside AppSync's alphabet
        "a=b",
        "user@example",
        "private-",  # a segment cannot end with a dash
        "-x",
        "a..b",  # an empty segment
        "a.b.c.d.e",  # five segments after the namespace
        "x" * 51,
    ],
)
def test_a_channel_appsync_cannot_carry_is_refused_not_rewritten(channel: str) -> None:
    with pytest.raises(InvalidChannel, match="AppSync channels take letters"):
        channels.to_path("relay", channel)


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/relay/*", "wildcard"),
        ("/relay/private-orders/*", "wildcard"),
        ("/other/news", "not in the 'relay' namespace"),
        ("/relay", "not a relay channel path"),
        ("/relay/a/b/c/d/e", "not a relay channel path"),
        (None, "must be a string"),
    ],
)
def test_a_path_that_names_no_one_relay_channel_is_refused(path: object, says: str) -> None:
    with pytest.raises(InvalidChannel, match=says):
        channels.from_path("relay", path)
