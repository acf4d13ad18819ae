"""Issue 12, finding 1: a Pusher HTTP API query is normalized once, and every check reads that form.

The attack: the string to sign lowercases parameter names and lets the last of two colliding
names supply the signed value, while the body and clock checks read the exact lower-case names.
A signed URL captured once is replayed with `Auth_Timestamp=`/`Body_MD5=` carrying the signed
values and `auth_timestamp=`/`body_md5=` carrying the attacker's. A query in which any name
repeats, exactly, in another case or percent-encoded, is now refused before anything else.

Signatures are computed here from Pusher's published algorithm, not with the relay's signer.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidSignature
from providers.pusherproto.signing import query_pairs, verify_request
from tests.security.conftest import APP_ID, APP_KEY, APP_SECRET, PROBLEM, PROBLEM_PREFIX, SECRETS

if TYPE_CHECKING:
    import httpx

    from tests.security.conftest import Target

NOW = 1_700_000_000
EVENTS_PATH = f"/apps/{APP_ID}/events"
SIGNED_BODY = orjson.dumps({"name": "signed", "channel": "open-forge", "data": "{}"})
EVIL_BODY = orjson.dumps({"name": "evil", "channel": "private-user-bob", "data": "{}"})
AUTH_NAMES = ("auth_key", "auth_timestamp", "auth_version", "body_md5", "auth_signature")

Pairs = list[tuple[str, str]]


def _md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def signed_pairs(
    body: bytes,
    *,
    method: str = "POST",
    path: str = EVENTS_PATH,
    timestamp: int = NOW,
    extra: dict[str, str] | None = None,
) -> Pairs:
    """The query pairs Pusher's algorithm gives for this request (lower-case names, sorted)."""
    params = {
        **(extra or {}),
        "auth_key": APP_KEY,
        "auth_timestamp": str(timestamp),
        "auth_version": "1.0",
    }
    if body:
        params["body_md5"] = _md5(body)
    text = "&".join(f"{k}={params[k]}" for k in sorted(params))
    message = f"{method}\n{path}\n{text}".encode()
    params["auth_signature"] = hmac.new(APP_SECRET.encode(), message, hashlib.sha256).hexdigest()
    return list(params.items())


def verify(pairs: Pairs, body: bytes, *, now: float = NOW) -> None:
    """The relay's check of a request to EVENTS_PATH."""
    verify_request(APP_KEY, APP_SECRET, "POST", EVENTS_PATH, pairs, body, now=now)


def refused(pairs: Pairs, body: bytes, *, now: float = NOW) -> InvalidSignature:
    """The InvalidSignature the relay raises for this request; it names no secret."""
    with pytest.raises(InvalidSignature) as caught:
        verify(pairs, body, now=now)
    for secret in SECRETS:
        assert secret not in str(caught.value)
    return caught.value


# -- strategies --------------------------------------------------------------------------------
def case_variants(name: str) -> st.SearchStrategy[str]:
    """`name` with each letter in either case."""
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(name, upper, strict=True))
    )


def other_case(name: str) -> st.SearchStrategy[str]:
    """`name` in a case that differs from the one given (at least one letter flipped)."""
    return case_variants(name).filter(lambda variant: variant != name)


# Extra parameters a request may carry: lower-case names that are not the auth ones, values
# without the separators the string to sign uses.
extra_names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(
    lambda n: n not in AUTH_NAMES
)
extra_values = st.text(st.characters(codec="utf-8", exclude_characters="&"), max_size=12)
extras = st.dictionaries(extra_names, extra_values, max_size=4)
bodies = st.binary(max_size=64)
SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- properties --------------------------------------------------------------------------------
@SLOW
@given(data=st.data(), extra=extras, body=bodies)
def test_any_order_and_any_case_of_distinct_names_verifies(
    data: st.DataObject, extra: dict[str, str], body: bytes
) -> None:
    pairs = signed_pairs(body, extra=extra)
    # The string to sign lowercases names: a name sent once, in any case, is that name.
    varied = [(data.draw(case_variants(name)), value) for name, value in pairs]
    shuffled = data.draw(st.permutations(varied))
    verify(shuffled, body)


@SLOW
@given(data=st.data(), extra=extras, body=bodies)
def test_any_repeated_name_is_refused_exact_or_case_variant(
    data: st.DataObject, extra: dict[str, str], body: bytes
) -> None:
    pairs = signed_pairs(body, extra=extra)
    name, value = data.draw(st.sampled_from(pairs))
    repeat = data.draw(case_variants(name))  # the exact name included
    again = data.draw(st.one_of(st.just(value), extra_values))  # even with the very same value
    at = data.draw(st.integers(min_value=0, max_value=len(pairs)))
    order = data.draw(st.permutations(pairs))
    forged = [*order[:at], (repeat, again), *order[at:]]
    error = refused(forged, body)
    assert "more than once" in error.detail


@SLOW
@given(data=st.data(), age=st.integers(min_value=0, max_value=10 * 365 * 24 * 3600))
def test_a_case_variant_replay_with_another_body_and_timestamp_is_refused(
    data: st.DataObject, age: int
) -> None:
    captured = dict(signed_pairs(SIGNED_BODY, timestamp=NOW - age))
    attacker: Pairs = [("auth_timestamp", str(NOW)), ("body_md5", _md5(EVIL_BODY))]
    # The signed values ride under other-case names, in any order and anywhere in the query.
    smuggled: Pairs = [
        (data.draw(other_case("auth_timestamp")), captured["auth_timestamp"]),
        (data.draw(other_case("body_md5")), captured["body_md5"]),
    ]
    rest: Pairs = [(k, v) for k, v in captured.items() if k not in ("auth_timestamp", "body_md5")]
    forged = data.draw(st.permutations([*rest, *attacker, *smuggled]))
    error = refused(forged, EVIL_BODY)
    assert "more than once" in error.detail


@SLOW
@given(data=st.data(), body=bodies)
def test_percent_encoded_variants_of_a_name_are_the_same_name(
    data: st.DataObject, body: bytes
) -> None:
    pairs = signed_pairs(body)
    name, value = data.draw(st.sampled_from(pairs))
    # Encode any subset of the name's characters: after decoding it is `name` again.
    chosen = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    encoded = "".join(f"%{ord(c):02X}" if e else c for c, e in zip(name, chosen, strict=True))
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in pairs) + f"&{encoded}={value}"
    error = refused(query_pairs(query), body)
    assert "more than once" in error.detail
    # Without the repeat, the percent-decoded query verifies.
    plain = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    verify(query_pairs(plain), body)


# -- examples ----------------------------------------------------------------------------------
def test_the_captured_url_verifies_for_its_own_body_and_time() -> None:
    verify(signed_pairs(SIGNED_BODY), SIGNED_BODY)


@pytest.mark.parametrize("name", AUTH_NAMES)
def test_an_exact_duplicate_with_the_same_value_is_refused(name: str) -> None:
    pairs = signed_pairs(SIGNED_BODY)
    value = dict(pairs)[name]
    error = refused([*pairs, (name, value)], SIGNED_BODY)
    assert error.detail == f"query parameter {name!r} is given more than once"


def test_a_body_without_body_md5_is_refused_even_when_signed() -> None:
    pairs = [(k, v) for k, v in signed_pairs(b"") if k != "auth_signature"]
    text = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    message = f"POST\n{EVENTS_PATH}\n{text}".encode()
    signature = hmac.new(APP_SECRET.encode(), message, hashlib.sha256).hexdigest()
    error = refused([*pairs, ("auth_signature", signature)], SIGNED_BODY)
    assert error.detail == "body_md5 is missing: a request with a body must sign it"


@pytest.mark.parametrize(
    ("name", "value"),
    [("info&auth_timestamp", "1"), ("info=x", "1"), ("info", "a&auth_timestamp=1")],
)
def test_separators_inside_names_or_values_are_refused(name: str, value: str) -> None:
    # `name=value` pairs joined by `&` must have one reading only.
    pairs = signed_pairs(SIGNED_BODY, extra={name: value})
    error = refused(pairs, SIGNED_BODY)
    assert "reserved character" in error.detail


@pytest.mark.parametrize("query", ["auth_key=%FF", "a=1&" * 65])
def test_a_query_that_cannot_be_read_one_way_is_refused(query: str) -> None:
    with pytest.raises(InvalidSignature):
        query_pairs(query)


def test_a_mapping_is_not_accepted_in_place_of_the_pairs() -> None:
    # A mapping has already resolved duplicates somehow: the caller must pass the raw pairs.
    # mypy refuses it too (a mapping iterates its names); this is the check at run time.
    mapping: Any = dict(signed_pairs(b""))
    with pytest.raises(TypeError):
        verify_request(APP_KEY, APP_SECRET, "POST", EVENTS_PATH, mapping, b"", now=NOW)


# -- the attack over HTTP, against the relay -----------------------------------------------------
def _query(pairs: Pairs) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def _assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"] == PROBLEM_PREFIX + "invalid-signature"
    for secret in SECRETS:
        assert secret not in answer.text


def _case_variant_replay(captured: Pairs, body: bytes, now: int) -> Pairs:
    """The captured query, its signed time and md5 moved under other-case names, placed last
    (the old code's string to sign let the last colliding name win), and the attacker's own
    values under the exact lower-case names that the body and clock checks read."""
    signed = dict(captured)
    return [
        ("auth_key", signed["auth_key"]),
        ("auth_version", signed["auth_version"]),
        ("auth_timestamp", str(now)),
        ("body_md5", _md5(body)),
        ("Auth_Timestamp", signed["auth_timestamp"]),
        ("Body_MD5", signed["body_md5"]),
        ("auth_signature", signed["auth_signature"]),
    ]


async def test_the_case_variant_replay_attack_is_refused_and_delivers_nothing(
    local_target: Target,
) -> None:
    now = int(time.time())
    captured = signed_pairs(SIGNED_BODY, timestamp=now - 7 * 24 * 3600)  # a week-old capture
    forged = _case_variant_replay(captured, EVIL_BODY, now)
    answer = await local_target.http.post(
        f"{EVENTS_PATH}?{_query(forged)}",
        content=EVIL_BODY,
        headers={"Content-Type": "application/json"},
    )
    _assert_refused(answer)
    assert "more than once" in answer.json()["detail"]
    local_target.assert_untouched()
    # The control: a fresh signature for the same body goes through, so the refusal above was
    # the forgery's doing and not the harness's.
    fresh = signed_pairs(EVIL_BODY, timestamp=now)
    ok = await local_target.http.post(f"{EVENTS_PATH}?{_query(fresh)}", content=EVIL_BODY)
    assert ok.status_code == 200, ok.text
    assert local_target.listener is not None
    assert local_target.listener.events() == [("private-user-bob", "evil", "{}")]


@pytest.mark.parametrize(
    "repeat",
    [
        pytest.param(("auth_timestamp", "{now}"), id="exact-duplicate-timestamp"),
        pytest.param(("AUTH_KEY", APP_KEY), id="upper-case-key"),
        pytest.param(("auth%5Fsignature", "{signature}"), id="percent-encoded-signature"),
        pytest.param(("Body_Md5", "{md5}"), id="case-variant-md5-same-value"),
    ],
)
async def test_any_repeated_name_is_refused_over_http(
    local_target: Target, repeat: tuple[str, str]
) -> None:
    now = int(time.time())
    pairs = signed_pairs(SIGNED_BODY, timestamp=now)
    signed = dict(pairs)
    name, template = repeat
    value = template.format(now=now, signature=signed["auth_signature"], md5=_md5(SIGNED_BODY))
    query = f"{_query(pairs)}&{name}={quote(value, safe='')}"
    answer = await local_target.http.post(f"{EVENTS_PATH}?{query}", content=SIGNED_BODY)
    _assert_refused(answer)
    local_target.assert_untouched()


async def test_the_channel_query_refuses_a_repeated_name_too(local_target: Target) -> None:
    path = f"/apps/{APP_ID}/channels/open-forge"
    pairs = signed_pairs(b"", method="GET", path=path, timestamp=int(time.time()))
    ok = await local_target.http.get(f"{path}?{_query(pairs)}")
    assert ok.status_code == 200, ok.text
    repeated = await local_target.http.get(f"{path}?{_query([*pairs, ('Auth_Key', APP_KEY)])}")
    _assert_refused(repeated)
