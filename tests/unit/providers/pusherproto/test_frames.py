"""Pusher Channels protocol 7 frames: the shapes pusher-js sends and expects."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from providers.pusherproto import frames
from providers.pusherproto.frames import ErrorCode


def _load(text: str) -> dict[str, Any]:
    frame = json.loads(text)
    assert isinstance(frame, dict)
    return frame


def _data_string(frame: dict[str, Any]) -> Any:
    """pusher-js decodes `data` a second time: it must be a JSON string."""
    assert isinstance(frame["data"], str)
    return json.loads(frame["data"])


def test_protocol_versions() -> None:
    assert frames.PROTOCOL_VERSION == 7
    assert frames.MIN_PROTOCOL_VERSION <= frames.PROTOCOL_VERSION


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (ErrorCode.APP_NOT_FOUND, 4001),
        (ErrorCode.INVALID_VERSION, 4006),
        (ErrorCode.UNAUTHORIZED, 4009),
        (ErrorCode.OVER_CAPACITY, 4100),
        (ErrorCode.GENERIC_RECONNECT, 4200),
        (ErrorCode.PONG_NOT_RECEIVED, 4201),
        (ErrorCode.CLIENT_EVENT_RATE_LIMIT, 4301),
    ],
)
def test_error_codes(code: ErrorCode, value: int) -> None:
    assert int(code) == value


def test_connection_established_data_is_a_json_string() -> None:
    frame = _load(frames.connection_established("1234.5678", 120))
    assert frame["event"] == "pusher:connection_established"
    assert set(frame) == {"event", "data"}
    assert _data_string(frame) == {"socket_id": "1234.5678", "activity_timeout": 120}


def test_subscription_succeeded_public() -> None:
    frame = _load(frames.subscription_succeeded("news"))
    assert frame["event"] == "pusher_internal:subscription_succeeded"
    assert frame["channel"] == "news"
    assert _data_string(frame) == {}


def test_subscription_succeeded_presence_carries_the_roster() -> None:
    roster = {
        "ids": ["1", "2"],
        "hash": {"1": {"name": "Ann"}, "2": {"name": "Zoë 🚀"}},
        "count": 2,
    }
    frame = _load(frames.subscription_succeeded("presence-room", roster))
    assert frame["channel"] == "presence-room"
    assert _data_string(frame) == {"presence": roster}


def test_subscription_succeeded_empty_presence_is_still_presence() -> None:
    frame = _load(frames.subscription_succeeded("presence-room", {}))
    assert _data_string(frame) == {"presence": {}}


@pytest.mark.parametrize(("message", "code"), [("over quota", 4004), ("slow down", None)])
def test_error_frame_data_is_an_object(message: str, code: int | None) -> None:
    frame = _load(frames.error(message, code))
    assert frame["event"] == "pusher:error"
    assert frame["data"] == {"message": message, "code": code}


def test_error_frame_accepts_an_error_code() -> None:
    frame = _load(frames.error("unauthorized", ErrorCode.UNAUTHORIZED))
    assert frame["data"]["code"] == 4009


def test_subscription_error_data_is_an_object() -> None:
    frame = _load(
        frames.subscription_error("private-a", kind="AuthError", message="denied", status=403)
    )
    assert frame == {
        "event": "pusher:subscription_error",
        "channel": "private-a",
        "data": {"type": "AuthError", "error": "denied", "status": 403},
    }


def test_member_added_and_removed() -> None:
    added = _load(frames.member_added("presence-a", "7", {"name": "Jürgen"}))
    assert added["event"] == "pusher_internal:member_added"
    assert added["channel"] == "presence-a"
    assert _data_string(added) == {"user_id": "7", "user_info": {"name": "Jürgen"}}
    removed = _load(frames.member_removed("presence-a", "7"))
    assert removed["event"] == "pusher_internal:member_removed"
    assert _data_string(removed) == {"user_id": "7"}


def test_signin_success_wraps_the_user_data_string() -> None:
    user_data = '{"id":"42","user_info":{"name":"Ann"}}'
    frame = _load(frames.signin_success(user_data))
    assert frame["event"] == "pusher:signin_success"
    assert _data_string(frame) == {"user_data": user_data}


@pytest.mark.parametrize(
    ("build", "name"), [(frames.ping, "pusher:ping"), (frames.pong, "pusher:pong")]
)
def test_ping_and_pong(build: Any, name: str) -> None:
    frame = _load(build())
    assert frame == {"event": name, "data": "{}"}


def test_event_without_user_id() -> None:
    frame = _load(frames.event("greeting", "news", '{"text":"hi"}'))
    assert frame == {"event": "greeting", "channel": "news", "data": '{"text":"hi"}'}
    assert "user_id" not in frame


def test_event_with_user_id() -> None:
    frame = _load(frames.event("client-typing", "private-a", "{}", user_id="42"))
    assert frame == {
        "event": "client-typing",
        "channel": "private-a",
        "data": "{}",
        "user_id": "42",
    }


def test_event_with_empty_user_id_still_carries_it() -> None:
    assert "user_id" in _load(frames.event("e", "c", "d", user_id=""))


def test_event_data_travels_verbatim() -> None:
    data = 'plain text with "quotes", € and 🚀'
    assert _load(frames.event("e", "c", data))["data"] == data


def test_frames_are_utf8_json_without_escapes() -> None:
    text = frames.event("e", "c", "€")
    assert "€" in text
    assert orjson.loads(text)["data"] == "€"


# --- parse -------------------------------------------------------------------------------------


def test_parse_object_frame() -> None:
    frame = frames.parse('{"event":"pusher:subscribe","data":{"channel":"news"}}')
    assert frame == {"event": "pusher:subscribe", "data": {"channel": "news"}}


def test_parse_double_encoded_protocol_data() -> None:
    text = json.dumps(
        {"event": "pusher:subscribe", "data": json.dumps({"channel": "private-a", "auth": "k:s"})}
    )
    assert frames.parse(text)["data"] == {"channel": "private-a", "auth": "k:s"}


def test_parse_leaves_undecodable_protocol_string_data() -> None:
    frame = frames.parse('{"event":"pusher:ping","data":"not json"}')
    assert frame["data"] == "not json"


def test_parse_leaves_client_event_data_alone() -> None:
    text = json.dumps({"event": "client-typing", "channel": "private-a", "data": '{"a":1}'})
    frame = frames.parse(text)
    assert frame["data"] == '{"a":1}'
    assert frame["channel"] == "private-a"


def test_parse_frame_without_data() -> None:
    assert frames.parse('{"event":"pusher:ping"}') == {"event": "pusher:ping"}


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '["pusher:ping"]',
        '"pusher:ping"',
        "42",
        "null",
        "true",
        "{}",
        '{"data":{}}',
        '{"event":null}',
        '{"event":42}',
        '{"event":["pusher:ping"]}',
        "",
        "{",
        "not json",
        '{"event":"pusher:ping",}',
        "{'event': 'pusher:ping'}",
    ],
    ids=repr,
)
def test_parse_refuses_with_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is exactly ValueError
        frames.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        frames.connection_established("1.2", 30),
        frames.subscription_succeeded("presence-a", {"count": 0}),
        frames.error("x", 4001),
        frames.event("e", "c", "{}", user_id="u"),
    ],
)
def test_server_frames_parse_back(text: str) -> None:
    frame = frames.parse(text)
    assert frame["event"] == json.loads(text)["event"]
