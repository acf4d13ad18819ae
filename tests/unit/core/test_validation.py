"""The well-formed gate: every rule of core.validation at and just past its limit."""

from __future__ import annotations

import json
import math
import string
from typing import Any

import orjson
import pytest

from core.errors import (
    BadRequest,
    InvalidChannel,
    InvalidEventName,
    InvalidPayload,
    InvalidSocketId,
    InvalidUserId,
    NonFiniteNumber,
    PayloadTooLarge,
    RelayError,
    TooManyItems,
)
from core.provider import Limits
from core.validation import (
    MAX_USER_ID_CHARS,
    MAX_USER_INFO_BYTES,
    ChannelKind,
    channel_kind,
    check_payload_size,
    encode_data,
    encode_user_info,
    is_user_id,
    loads_json,
    validate_channel,
    validate_channels,
    validate_event_name,
    validate_socket_id,
    validate_user_id,
)

DEFAULT = Limits()
ENCRYPTED = Limits(supports_encrypted_channels=True)
SMALL = Limits(max_payload_bytes=10, max_channel_name=8, max_event_name=5)


def test_default_limits_are_pushers() -> None:
    assert DEFAULT.max_payload_bytes == 10_240
    assert DEFAULT.max_channel_name == 164
    assert DEFAULT.max_event_name == 200
    assert DEFAULT.supports_encrypted_channels is False


# --- error classes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "slug", "status"),
    [
        (InvalidChannel, "invalid-channel", 400),
        (InvalidEventName, "invalid-event-name", 400),
        (InvalidSocketId, "invalid-socket-id", 400),
        (InvalidPayload, "invalid-payload", 400),
        (NonFiniteNumber, "non-finite-number", 422),
        (InvalidUserId, "invalid-user-id", 400),
        (TooManyItems, "too-many-items", 400),
        (PayloadTooLarge, "payload-too-large", 413),
    ],
)
def test_problem_type_and_status(cls: type[RelayError], slug: str, status: int) -> None:
    error = cls("detail text", limit=3)
    assert issubclass(cls, BadRequest)
    assert error.type == f"urn:realtime-relay:problem:{slug}"
    assert error.status == status
    assert error.problem() == {
        "type": f"urn:realtime-relay:problem:{slug}",
        "title": cls.title,
        "status": status,
        "detail": "detail text",
        "limit": 3,
    }


# --- channels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 100, 163, 164])
def test_channel_name_up_to_the_limit(length: int) -> None:
    name = "a" * length
    assert validate_channel(name, DEFAULT) == name


@pytest.mark.parametrize("prefix", ["", "private-", "presence-"])
def test_channel_name_at_the_limit_includes_its_prefix(prefix: str) -> None:
    ok = prefix + "x" * (164 - len(prefix))
    assert validate_channel(ok, DEFAULT) == ok
    with pytest.raises(InvalidChannel) as caught:
        validate_channel(ok + "x", DEFAULT)
    assert caught.value.extra["limit"] == 164
    assert "165" in caught.value.detail


def test_channel_name_over_the_limit() -> None:
    with pytest.raises(InvalidChannel) as caught:
        validate_channel("a" * 165, DEFAULT)
    assert caught.value.type == "urn:realtime-relay:problem:invalid-channel"
    assert caught.value.status == 400


def test_channel_name_limit_comes_from_the_provider() -> None:
    assert validate_channel("a" * 8, SMALL) == "a" * 8
    with pytest.raises(InvalidChannel):
        validate_channel("a" * 9, SMALL)


@pytest.mark.parametrize("char", list("-_=@,.;"))
def test_every_allowed_punctuation_char(char: str) -> None:
    for name in (f"a{char}b", f"{char}", f"private-{char}", f"x{char * 3}"):
        assert validate_channel(name, DEFAULT) == name


def test_every_letter_and_digit() -> None:
    name = string.ascii_letters + string.digits
    assert validate_channel(name, DEFAULT) == name


@pytest.mark.parametrize(
    "name",
    [
        "a b",
        " a",
        "a ",
        "a#b",
        "#server-to-user-1",
        "a/b",
        "a:b",
        "private-a:b",
        "café",
        "\uff41",  # fullwidth a
        "١٢٣",  # Arabic-Indic digits
        "a\nb",
        "a\n",
        "a\t",
        "a\x00",
        "a*b",
        "a+b",
        "a%20b",
        "a?b",
        "a'b",
        'a"b',
        "a\\b",
        "a|b",
        "🚀",
    ],
    ids=repr,
)
def test_refused_channel_characters(name: str) -> None:
    with pytest.raises(InvalidChannel, match="may contain only"):
        validate_channel(name, DEFAULT)


@pytest.mark.parametrize("value", ["", None, 1, b"news", ["news"]], ids=repr)
def test_channel_must_be_a_non_empty_string(value: object) -> None:
    with pytest.raises(InvalidChannel, match="non-empty string"):
        validate_channel(value, DEFAULT)


@pytest.mark.parametrize("limits", [DEFAULT, ENCRYPTED], ids=["plain", "encrypted"])
@pytest.mark.parametrize("name", ["private-", "presence-", "private-encrypted-"])
def test_prefix_only_names_are_refused(name: str, limits: Limits) -> None:
    with pytest.raises(InvalidChannel):
        validate_channel(name, limits)


def test_prefix_only_message() -> None:
    with pytest.raises(InvalidChannel, match="more than its prefix"):
        validate_channel("private-encrypted-", ENCRYPTED)


@pytest.mark.parametrize("name", ["private", "presence", "private-encrypted", "privat-e"])
def test_names_that_only_resemble_a_prefix_are_channels(name: str) -> None:
    assert validate_channel(name, DEFAULT) == name


def test_encrypted_channels_need_provider_support() -> None:
    with pytest.raises(InvalidChannel, match="does not support private-encrypted-"):
        validate_channel("private-encrypted-room", DEFAULT)
    assert validate_channel("private-encrypted-room", ENCRYPTED) == "private-encrypted-room"


@pytest.mark.parametrize(
    ("name", "kind", "needs_auth"),
    [
        ("news", ChannelKind.PUBLIC, False),
        ("private", ChannelKind.PUBLIC, False),
        ("presence", ChannelKind.PUBLIC, False),
        ("public-private-x", ChannelKind.PUBLIC, False),
        ("private-x", ChannelKind.PRIVATE, True),
        ("private-encryptedx", ChannelKind.PRIVATE, True),
        ("private-presence-x", ChannelKind.PRIVATE, True),
        ("presence-x", ChannelKind.PRESENCE, True),
        ("presence-private-encrypted-x", ChannelKind.PRESENCE, True),
        ("private-encrypted-x", ChannelKind.PRIVATE_ENCRYPTED, True),
    ],
)
def test_channel_kinds(name: str, kind: ChannelKind, needs_auth: bool) -> None:
    assert channel_kind(name) is kind
    assert kind.needs_auth is needs_auth


def test_channel_kind_values() -> None:
    assert [k.value for k in ChannelKind] == [
        "public",
        "private",
        "presence",
        "private-encrypted",
    ]


# --- channel lists -----------------------------------------------------------------------------


def test_validate_channels_dedupes_in_order() -> None:
    channels = ["b", "a", "b", "private-c", "a"]
    assert validate_channels(channels, DEFAULT, max_count=10) == ["b", "a", "private-c"]


def test_validate_channels_up_to_max_count() -> None:
    channels = [f"c{i}" for i in range(3)]
    assert validate_channels(channels, DEFAULT, max_count=3) == channels


def test_validate_channels_over_max_count() -> None:
    with pytest.raises(TooManyItems) as caught:
        validate_channels(["a", "b", "c", "d"], DEFAULT, max_count=3)
    assert caught.value.extra == {"limit": 3}
    assert caught.value.status == 400
    assert caught.value.type == "urn:realtime-relay:problem:too-many-items"


def test_validate_channels_default_pusher_count() -> None:
    limit = 100
    assert len(validate_channels([f"c{i}" for i in range(limit)], DEFAULT, max_count=limit)) == 100
    with pytest.raises(TooManyItems):
        validate_channels([f"c{i}" for i in range(limit + 1)], DEFAULT, max_count=limit)


@pytest.mark.parametrize("value", [[], None, "news", ("news",), {"news": 1}], ids=repr)
def test_validate_channels_needs_a_non_empty_list(value: object) -> None:
    with pytest.raises(InvalidChannel, match="at least one channel"):
        validate_channels(value, DEFAULT, max_count=10)


@pytest.mark.parametrize("bad", ["a b", "", 3, "a" * 165, "private-encrypted-x"], ids=repr)
def test_validate_channels_validates_each(bad: object) -> None:
    with pytest.raises(InvalidChannel):
        validate_channels(["ok", bad], DEFAULT, max_count=10)


# --- event names -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 199, 200])
def test_event_name_up_to_the_limit(length: int) -> None:
    name = "e" * length
    assert validate_event_name(name, DEFAULT) == name


def test_event_name_over_the_limit() -> None:
    with pytest.raises(InvalidEventName) as caught:
        validate_event_name("e" * 201, DEFAULT)
    assert caught.value.extra == {"limit": 200}
    assert caught.value.type == "urn:realtime-relay:problem:invalid-event-name"
    with pytest.raises(InvalidEventName):
        validate_event_name("client-" + "e" * 194, DEFAULT, client=True)
    assert validate_event_name("client-" + "e" * 193, DEFAULT, client=True)


def test_event_name_limit_comes_from_the_provider() -> None:
    assert validate_event_name("e" * 5, SMALL) == "e" * 5
    with pytest.raises(InvalidEventName):
        validate_event_name("e" * 6, SMALL)


@pytest.mark.parametrize("client", [False, True])
@pytest.mark.parametrize("value", ["", None, 7, b"greeting"], ids=repr)
def test_event_name_must_be_a_non_empty_string(value: object, client: bool) -> None:
    with pytest.raises(InvalidEventName, match="non-empty string"):
        validate_event_name(value, DEFAULT, client=client)


@pytest.mark.parametrize("client", [False, True])
@pytest.mark.parametrize(
    "name", ["pusher:x", "pusher_internal:x", "pusher:", "pusher_internal:subscription_succeeded"]
)
def test_reserved_event_names(name: str, client: bool) -> None:
    with pytest.raises(InvalidEventName, match="reserved"):
        validate_event_name(name, DEFAULT, client=client)


@pytest.mark.parametrize("name", ["pusher", "pusherx", "my-pusher:x", "Pusher:x"])
def test_names_resembling_reserved_prefixes_are_allowed(name: str) -> None:
    assert validate_event_name(name, DEFAULT) == name


def test_client_prefix_is_refused_for_server_events() -> None:
    with pytest.raises(InvalidEventName, match="client events only"):
        validate_event_name("client-x", DEFAULT)


@pytest.mark.parametrize("name", ["greeting", "x", "clientx", "Client-x"])
def test_client_prefix_is_required_for_client_events(name: str) -> None:
    with pytest.raises(InvalidEventName, match="must start with client-"):
        validate_event_name(name, DEFAULT, client=True)
    assert validate_event_name(name, DEFAULT) == name


def test_client_event_accepted() -> None:
    assert validate_event_name("client-typing", DEFAULT, client=True) == "client-typing"


# --- socket ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "socket_id", ["1.1", "1234.5678", "0.0", "9" * 20 + "." + "9" * 20, "123456789.98765"]
)
def test_valid_socket_ids(socket_id: str) -> None:
    assert validate_socket_id(socket_id) == socket_id


@pytest.mark.parametrize(
    "socket_id",
    [
        "1.",
        ".1",
        ".",
        "a.b",
        "1.a",
        "1.1.1",
        "1234",
        " 1.1",
        "1.1 ",
        "1.1\n",
        "\n1.1",
        "1 .1",
        "1,1",
        "-1.1",
        "+1.1",
        "1.-1",
        "1" * 21 + ".1",
        "1." + "1" * 21,
        "",
    ],
    ids=repr,
)
def test_invalid_socket_ids(socket_id: str) -> None:
    with pytest.raises(InvalidSocketId) as caught:
        validate_socket_id(socket_id)
    assert caught.value.type == "urn:realtime-relay:problem:invalid-socket-id"
    assert caught.value.status == 400


@pytest.mark.parametrize("socket_id", ["١٢٣.٤٥٦", "\uff11.\uff11", "१.२"])
def test_non_ascii_digits_are_not_a_socket_id(socket_id: str) -> None:
    with pytest.raises(InvalidSocketId):
        validate_socket_id(socket_id)


@pytest.mark.parametrize("value", [None, 1.1, 11, b"1.1", ["1.1"]], ids=repr)
def test_socket_id_must_be_a_string(value: object) -> None:
    with pytest.raises(InvalidSocketId):
        validate_socket_id(value)


# --- payloads ----------------------------------------------------------------------------------


def test_ascii_payload_at_the_limit() -> None:
    assert check_payload_size("a" * 10_240, DEFAULT) == 10_240


def test_ascii_payload_over_the_limit() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        check_payload_size("a" * 10_241, DEFAULT)
    error = caught.value
    assert error.status == 413
    assert error.type == "urn:realtime-relay:problem:payload-too-large"
    assert error.extra == {"limit": 10_240, "size": 10_241}


def test_payload_size_is_counted_in_utf8_bytes() -> None:
    data = "€" * 3414  # 3414 characters, 10242 bytes
    assert len(data) < 10_240
    with pytest.raises(PayloadTooLarge) as caught:
        check_payload_size(data, DEFAULT)
    assert caught.value.extra["size"] == 10_242


@pytest.mark.parametrize(("char", "width"), [("é", 2), ("€", 3), ("🚀", 4), ("👩‍👩‍👧", 18)])
def test_multibyte_payload_at_and_past_the_limit(char: str, width: int) -> None:
    assert len(char.encode()) == width
    count = 10_240 // width
    filler = "a" * (10_240 - count * width)
    exact = char * count + filler
    assert check_payload_size(exact, DEFAULT) == 10_240
    with pytest.raises(PayloadTooLarge):
        check_payload_size(exact + "a", DEFAULT)


def test_four_byte_emoji_counts_four() -> None:
    assert check_payload_size("🚀", DEFAULT) == 4
    with pytest.raises(PayloadTooLarge):
        check_payload_size("🚀" * 2561, DEFAULT)  # 10244 bytes, 2561 characters
    assert check_payload_size("🚀" * 2560, DEFAULT) == 10_240


def test_payload_limit_comes_from_the_provider() -> None:
    assert check_payload_size("a" * 10, SMALL) == 10
    with pytest.raises(PayloadTooLarge) as caught:
        check_payload_size("a" * 11, SMALL)
    assert caught.value.extra == {"limit": 10, "size": 11}


def test_empty_payload() -> None:
    assert check_payload_size("", DEFAULT) == 0


@pytest.mark.parametrize(
    "value",
    [
        {"text": "héllo €", "emoji": "🚀", "n": [1, 2.5, None, True]},
        ["a", {"b": "ü"}],
        {"nested": {"deep": ["€" * 100]}},
        12345,
        1.5,
        None,
        True,
        "plain string",
        "€ string",
    ],
    ids=repr,
)
def test_json_values_are_sized_as_orjson_encodes_them(value: Any) -> None:
    encoded = encode_data(value)
    expected = value.encode() if isinstance(value, str) else orjson.dumps(value)
    assert encoded.encode() == expected
    assert check_payload_size(encoded, DEFAULT) == len(expected)


def test_strings_travel_as_they_are() -> None:
    assert encode_data('{"a": 1}') == '{"a": 1}'
    assert encode_data("") == ""


def test_json_payload_at_and_past_the_limit() -> None:
    overhead = len(orjson.dumps({"t": ""}))
    at_limit = {"t": "€" * ((10_240 - overhead) // 3) + "a" * ((10_240 - overhead) % 3)}
    assert len(orjson.dumps(at_limit)) == 10_240
    assert check_payload_size(encode_data(at_limit), DEFAULT) == 10_240
    with pytest.raises(PayloadTooLarge):
        check_payload_size(encode_data({"t": at_limit["t"] + "a"}), DEFAULT)


@pytest.mark.parametrize("data", ["\ud800", "a\udfffb", "ok" + "\udc00" * 3], ids=repr)
def test_lone_surrogate_string_is_an_invalid_payload(data: str) -> None:
    encoded = encode_data(data)
    with pytest.raises(InvalidPayload, match="not valid Unicode") as caught:
        check_payload_size(encoded, DEFAULT)
    assert caught.value.type == "urn:realtime-relay:problem:invalid-payload"


def test_lone_surrogate_inside_json_is_an_invalid_payload() -> None:
    with pytest.raises(InvalidPayload):
        encode_data({"text": "\ud800"})


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, {"a": object()}, {1: "non-string key"}, 2**64, b"bytes", 1j],
    ids=lambda v: type(v).__name__,
)
def test_non_json_data_is_an_invalid_payload(value: Any) -> None:
    with pytest.raises(InvalidPayload, match="JSON-encodable") as caught:
        encode_data(value)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        {"price": math.nan},
        [1, 2, [3, {"deep": -math.inf}]],
        (1.0, math.inf),
        {"a": None, "b": [None, math.nan]},
    ],
    ids=repr,
)
def test_non_finite_numbers_are_refused_not_sent_as_null(value: Any) -> None:
    with pytest.raises(NonFiniteNumber) as caught:
        encode_data(value)
    assert caught.value.status == 422
    assert isinstance(caught.value, InvalidPayload)


@pytest.mark.parametrize(
    "value",
    [None, {"a": None}, [None, 1.5, "null"], 1.7976931348623157e308, -0.0, 5e-324, "NaN"],
    ids=repr,
)
def test_null_and_finite_extremes_still_travel(value: Any) -> None:
    expected = value if isinstance(value, str) else orjson.dumps(value).decode()
    assert encode_data(value) == expected


@pytest.mark.parametrize(
    "body",
    ["NaN", "[Infinity]", '{"a": -Infinity}', "1e400", '{"a": [-1e400]}', "[1E+309]"],
)
def test_loads_json_refuses_non_finite_tokens(body: str) -> None:
    assert not all(map(math.isfinite, _floats(json.loads(body))))  # what the stdlib parser does
    with pytest.raises(NonFiniteNumber):
        loads_json(body.encode())


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [f for item in value for f in _floats(item)] if isinstance(value, list) else []


@pytest.mark.parametrize(
    "body",
    ['{"a": [1, 2.5, -0.0, null, "NaN"]}', "1e308", "1e-400", "123456789012345678901234567890"],
)
def test_loads_json_reads_everything_else_as_the_standard_library(body: str) -> None:
    assert loads_json(body.encode()) == json.loads(body)


def test_loads_json_lets_syntax_errors_through_as_the_standard_library_raises_them() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_json(b'{"a": ')


# --- user ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id",
    [
        "auth0|123",
        "google-oauth2|1234",
        "a@b.c",
        "3f2b8c1e-9d4a-4f6b-8e2a-1c5d7e9f0a1b",
        "https://login.example.com/id/00D/005",
        "Ada Lovelace",
        "zoë·東京",
        "a%7Cb",
        "x",
        "u" * MAX_USER_ID_CHARS,
    ],
)
def test_user_ids_sign_in_accepts_are_valid(user_id: str) -> None:
    assert is_user_id(user_id)
    assert validate_user_id(user_id) == user_id


@pytest.mark.parametrize(
    "user_id",
    [
        "",
        "u" * (MAX_USER_ID_CHARS + 1),
        "a\nb",
        "a\r",
        "\x00",
        "\x1f",
        "\x7f",
        "\x80",
        "\x9f",
        "a\u2028",
        "a\u2029",
        "\ud800",
        "a\udfff",
        None,
        42,
        ["alice"],
    ],
    ids=repr,
)
def test_user_ids_sign_in_refuses_are_invalid(user_id: object) -> None:
    assert not is_user_id(user_id)
    with pytest.raises(InvalidUserId) as caught:
        validate_user_id(user_id)
    assert caught.value.status == 400


# --- presence user_info ------------------------------------------------------------------------


def test_user_info_at_and_over_the_limit() -> None:
    overhead = len(orjson.dumps({"name": ""}))
    at_limit = {"name": "n" * (MAX_USER_INFO_BYTES - overhead)}
    assert encode_user_info(at_limit) == orjson.dumps(at_limit).decode()
    with pytest.raises(PayloadTooLarge) as caught:
        encode_user_info({"name": "n" * (MAX_USER_INFO_BYTES - overhead + 1)})
    assert caught.value.extra == {"limit": 1024}
    assert caught.value.status == 413


def test_user_info_is_measured_in_bytes() -> None:
    overhead = len(orjson.dumps({"name": ""}))
    chars = (MAX_USER_INFO_BYTES - overhead) // 3 + 1  # fewer than 1024 characters, > 1024 bytes
    with pytest.raises(PayloadTooLarge):
        encode_user_info({"name": "€" * chars})


def test_user_info_non_json_is_an_invalid_payload() -> None:
    with pytest.raises(InvalidPayload):
        encode_user_info({"name": object()})
    with pytest.raises(InvalidPayload):
        encode_user_info({"name": "\ud800"})


def test_user_info_lone_surrogate_string_is_an_invalid_payload() -> None:
    with pytest.raises(InvalidPayload):
        encode_user_info("\ud800")
