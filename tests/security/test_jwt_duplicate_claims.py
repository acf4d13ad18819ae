"""Issue 12, finding 1 (the same pattern in the JWT verifier): a member named twice in a token.

PyJWT parses the header and the payload with json.loads, which keeps the last of two equal keys;
the issuer, or anything else that reads the token, may keep the first. A token whose header or
payload names a member twice (at any depth, however the name is escaped) is refused with 401
invalid-token, on every provider, even when its signature is good.

Tokens are written byte by byte here (no JSON library writes a duplicate key) and signed with the
published JWS algorithms.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.security.conftest import (
    AUDIENCE,
    ISSUER,
    JWT_SECRET,
    KID,
    PROBLEM,
    PROBLEM_PREFIX,
    SECRETS,
    b64url,
    bearer,
    rsa_key,
)

if TYPE_CHECKING:
    import httpx

    from tests.security.conftest import Target

DETAIL = "duplicate key in token"


def _claims_json(*, first: str = "", last: str = "", sub: str = "alice") -> bytes:
    """Valid claims for `sub` as JSON text, with raw members spliced in first and last."""
    now = int(time.time())
    body = orjson.dumps(
        {"sub": sub, "iat": now, "nbf": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE}
    ).decode()[1:-1]
    members = [m for m in (first, body, last) if m]
    return ("{" + ",".join(members) + "}").encode()


def _hs256(header: bytes, payload: bytes) -> str:
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    mac = hmac.new(JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _rs256(header: bytes, payload: bytes) -> str:
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    signature = rsa_key().sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


HS_HEADER = b'{"alg":"HS256","typ":"JWT"}'
RS_HEADER = b'{"alg":"RS256","typ":"JWT","kid":"' + KID.encode() + b'"}'
NOW = int(time.time())

# (a token whose signature is good but which names a member twice, the token without the repeat)
FORGERIES: list[Any] = [
    pytest.param(
        lambda: _hs256(HS_HEADER, _claims_json(first='"sub":"bob"')),
        lambda: _hs256(HS_HEADER, _claims_json()),
        id="sub-twice-last-is-alice",
    ),
    pytest.param(
        lambda: _hs256(HS_HEADER, _claims_json(last='"sub":"bob"')),
        lambda: _hs256(HS_HEADER, _claims_json()),
        id="sub-twice-last-is-bob",
    ),
    pytest.param(
        lambda: _hs256(HS_HEADER, _claims_json(last='"\\u0073ub":"bob"')),
        lambda: _hs256(HS_HEADER, _claims_json()),
        id="sub-twice-escaped",
    ),
    pytest.param(
        lambda: _hs256(HS_HEADER, _claims_json(first=f'"exp":{NOW - 3600}')),
        lambda: _hs256(HS_HEADER, _claims_json()),
        id="exp-twice-expired-first",
    ),
    pytest.param(
        lambda: _hs256(HS_HEADER, _claims_json(first='"aud":"another-service"')),
        lambda: _hs256(HS_HEADER, _claims_json()),
        id="aud-twice",
    ),
    pytest.param(
        lambda: _hs256(HS_HEADER, _claims_json(last='"ctx":{"role":"user","role":"admin"}')),
        lambda: _hs256(HS_HEADER, _claims_json(last='"ctx":{"role":"user"}')),
        id="nested-member-twice",
    ),
    pytest.param(
        lambda: _hs256(b'{"alg":"none","typ":"JWT","alg":"HS256"}', _claims_json()),
        lambda: _hs256(HS_HEADER, _claims_json()),
        id="header-alg-twice",
    ),
    pytest.param(
        lambda: _rs256(RS_HEADER[:-1] + b',"kid":"' + KID.encode() + b'"}', _claims_json()),
        lambda: _rs256(RS_HEADER, _claims_json()),
        id="header-kid-twice-rs256",
    ),
    pytest.param(
        lambda: _rs256(RS_HEADER, _claims_json(last='"sub":"bob"')),
        lambda: _rs256(RS_HEADER, _claims_json()),
        id="sub-twice-rs256",
    ),
]


def _assert_invalid_token(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["type"] == PROBLEM_PREFIX + "invalid-token"
    assert problem["detail"] == DETAIL
    for secret in SECRETS:
        assert secret not in answer.text


@pytest.mark.parametrize(("forge", "control"), FORGERIES)
async def test_a_token_naming_a_member_twice_is_refused_and_changes_nothing(
    target: Target, forge: Any, control: Any
) -> None:
    token = forge()
    _assert_invalid_token(await target.user_probe(token))
    _assert_invalid_token(await target.publish(bearer(token)))
    members = await target.http.get("/v1/channels/presence-room/members", headers=bearer(token))
    _assert_invalid_token(members)
    target.assert_untouched()
    # The control: the same token without the repeat passes, so the refusal is the repeat's.
    accepted = await target.user_probe(control())
    assert accepted.status_code == 200, accepted.text


async def test_a_refused_token_is_not_remembered_as_verified(local_target: Target) -> None:
    # Asked twice, the same token is refused twice: the verified-token memory never holds it.
    token = _hs256(HS_HEADER, _claims_json(last='"sub":"bob"'))
    for _ in range(2):
        _assert_invalid_token(await local_target.publish(bearer(token), key=None))
    local_target.assert_untouched()
