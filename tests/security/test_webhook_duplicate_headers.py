"""Issue 12, finding 1 (the same pattern in the webhook verifiers): a signed header given twice.

Starlette keeps a repeated header and answers `.get()` with its first copy, so a verifier that
reads `.get()` lets whoever adds a copy in front choose which one counts. Pusher's and Ably's
webhook verifiers now refuse a request in which X-Pusher-Key, X-Pusher-Signature, X-Ably-Key or
X-Ably-Signature appears more than once, in any case, even when every copy is the right one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from core.errors import InvalidSignature
from providers.ably import webhooks as ably_webhooks
from providers.pusher import webhooks as pusher_webhooks
from tests.security.conftest import (
    ABLY_KEY_NAME,
    ABLY_SECRET,
    PROBLEM,
    PROBLEM_PREFIX,
    PUSHER_KEY,
    PUSHER_SECRET,
    SECRETS,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from tests.security.conftest import Target

Headers = list[tuple[str, str]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _pusher_body() -> bytes:
    event = {"name": "member_added", "channel": "presence-room", "user_id": "intruder"}
    return orjson.dumps({"time_ms": _now_ms(), "events": [event]})


def _pusher_signature(body: bytes, secret: str = PUSHER_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _ably_body() -> bytes:
    now = _now_ms()
    presence = {"action": 2, "clientId": "intruder", "timestamp": now}
    item = {
        "source": "channel.presence",
        "name": "presence.message",
        "timestamp": now,
        "data": {"channelId": "presence-room", "presence": [presence]},
    }
    return orjson.dumps({"items": [item]})


def _ably_signature(body: bytes, secret: str = ABLY_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# For each provider: its body, a signature function, and its two signed headers (key, signature).
PROVIDERS: dict[str, tuple[Callable[[], bytes], Callable[..., str], str, str, str]] = {
    "pusher": (_pusher_body, _pusher_signature, "X-Pusher-Key", "X-Pusher-Signature", PUSHER_KEY),
    "ably": (_ably_body, _ably_signature, "X-Ably-Key", "X-Ably-Signature", ABLY_KEY_NAME),
}

# How a signed header is repeated: (header to repeat, its copy's name, the copy's value, where).
REPEATS = [
    pytest.param("signature", str.title, "right", "after", id="signature-twice-same"),
    pytest.param("signature", str.lower, "right", "before", id="signature-lower-case-copy"),
    pytest.param("signature", str.upper, "wrong", "after", id="wrong-signature-after"),
    pytest.param("signature", str.title, "wrong", "before", id="wrong-signature-before"),
    pytest.param("key", str.title, "right", "after", id="key-twice-same"),
    pytest.param("key", str.lower, "wrong", "before", id="other-key-before"),
]


def _signed(provider: str, body: bytes) -> Headers:
    """The headers the provider sends with `body`, each signed header once."""
    _, sign, key_header, signature_header, key = PROVIDERS[provider]
    return [("Content-Type", "application/json"), (key_header, key), (signature_header, sign(body))]


def _repeated(
    provider: str, body: bytes, which: str, spell: Callable[[str], str], copy: str, where: str
) -> Headers:
    """The signed headers with one more copy of the key or the signature header."""
    _, sign, key_header, signature_header, key = PROVIDERS[provider]
    if which == "signature":
        value = sign(body) if copy == "right" else sign(body, "not-the-secret-0123456789")
        name = signature_header
    else:
        value = key if copy == "right" else "someone.elses"
        name = key_header
    extra = (spell(name), value)
    headers = _signed(provider, body)
    return [extra, *headers] if where == "before" else [*headers, extra]


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(("which", "spell", "copy", "where"), REPEATS)
async def test_a_repeated_signed_header_is_refused_over_http(
    make_target: Callable[..., AbstractAsyncContextManager[Target]],
    provider: str,
    which: str,
    spell: Callable[[str], str],
    copy: str,
    where: str,
) -> None:
    make_body = PROVIDERS[provider][0]
    async with make_target(provider) as target:
        body = make_body()
        forged = _repeated(provider, body, which, spell, copy, where)
        answer = await target.http.post(f"/v1/webhooks/{provider}", content=body, headers=forged)
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == PROBLEM
        problem = answer.json()
        assert problem["type"] == PROBLEM_PREFIX + "invalid-signature"
        assert "more than once" in problem["detail"]
        for secret in SECRETS:
            assert secret not in answer.text
        target.assert_untouched()
        # The control: the same body with each signed header once is accepted.
        ok = await target.http.post(
            f"/v1/webhooks/{provider}", content=body, headers=_signed(provider, body)
        )
        assert ok.status_code == 200, ok.text
        assert [e["user_id"] for e in ok.json()["events"]] == ["intruder"]


@pytest.mark.parametrize("allow_unsigned", [False, True])
def test_two_ably_signatures_are_never_taken_for_unsigned(allow_unsigned: bool) -> None:
    body = _ably_body()
    headers = {"X-Ably-Signature": _ably_signature(body), "x-ably-signature": ""}
    with pytest.raises(InvalidSignature, match="more than once"):
        ably_webhooks.verify(
            ABLY_KEY_NAME, ABLY_SECRET, headers, body, allow_unsigned=allow_unsigned
        )


def test_case_variant_keys_of_a_plain_mapping_are_the_same_header() -> None:
    body = _pusher_body()
    signature = _pusher_signature(body)
    once: dict[str, Any] = {"X-Pusher-Key": PUSHER_KEY, "x-pusher-signature": signature}
    pusher_webhooks.verify(PUSHER_KEY, PUSHER_SECRET, once, body)  # any case, given once: fine
    twice = {**once, "X-PUSHER-SIGNATURE": signature}
    with pytest.raises(InvalidSignature, match="more than once"):
        pusher_webhooks.verify(PUSHER_KEY, PUSHER_SECRET, twice, body)
