"""Every error the relay raises on purpose, and how each becomes RFC 9457 problem+json.

    RelayError                      500 internal
    ├── ConfigurationError          start-up only: every problem, each naming its variable
    ├── BadRequest                  400 invalid-request
    │   ├── InvalidChannel          400 invalid-channel
    │   │   └── EncryptedMultiChannel  400 encrypted-multi-channel
    │   ├── InvalidEventName        400 invalid-event-name
    │   ├── InvalidSocketId         400 invalid-socket-id
    │   ├── InvalidUserId           400 invalid-user-id
    │   ├── InvalidPayload          400 invalid-payload
    │   │   └── NonFiniteNumber     422 non-finite-number
    │   ├── TooManyItems            400 too-many-items
    │   └── PayloadTooLarge         413 payload-too-large
    ├── Unauthenticated             401 unauthenticated
    │   ├── InvalidToken            401 invalid-token
    │   └── InvalidSignature        401 invalid-signature
    ├── Forbidden                   403 forbidden  (a policy decision said no)
    │   └── OriginNotAllowed        403 origin-not-allowed
    ├── NotFound                    404 not-found
    ├── HistoryGap                  410 history-gap (since= an id the history no longer follows)
    ├── IdempotencyInProgress       409 idempotency-in-progress
    ├── IdempotencyKeyReused        422 idempotency-key-reused
    ├── RateLimited                 429 rate-limited (Retry-After)
    ├── NotSupported                501 not-supported  (the provider cannot do this)
    │   └── EncryptedChannelHistory 501 encrypted-channel-history (the relay keeps none)
    └── ProviderError               502 provider-error (retryable or not)
        ├── ProviderUnavailable     503 provider-unavailable
        └── ProviderTimeout         504 provider-timeout (delivery unknown)
            └── TimeoutReplayed     504 provider-timeout, Idempotent-Replayed: nothing sent again

The `type` of each problem is `urn:realtime-relay:problem:<slug>`, stable across releases. A
`detail` never carries a secret, a signature or a payload. A refusal of one event of a batch says
which: an `item` member (the event's index) and a detail that starts `batch item <index>: `.
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar, Self

PROBLEM_TYPE_PREFIX = "urn:realtime-relay:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class RelayError(Exception):
    """Base of the relay's own errors."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type(self) -> str:
        """The stable problem type URI."""
        return PROBLEM_TYPE_PREFIX + self.slug

    def problem(self, *, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 body."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        """Extra response headers (for example Retry-After or WWW-Authenticate)."""
        return {}

    def of_batch_item(self, index: int) -> Self:
        """The same refusal, said of event `index` of a batch: an `item` member, the detail
        prefixed `batch item <index>: `; type, status and headers unchanged."""
        error = copy.copy(self)
        error.detail = f"batch item {index}: {self.detail}"
        error.args = (error.detail,)
        error.extra = {**self.extra, "item": index}
        return error


class ConfigurationError(RelayError):
    """Settings are missing or malformed; start-up stops. Each problem is a line that names its
    variable; `detail` joins them."""

    slug = "configuration"
    title = "Configuration error"

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class BadRequest(RelayError):
    """The request is malformed."""

    status = 400
    slug = "invalid-request"
    title = "Invalid request"


class InvalidChannel(BadRequest):
    """A channel name breaks the naming rules or a limit."""

    slug = "invalid-channel"
    title = "Invalid channel name"


class EncryptedMultiChannel(InvalidChannel):
    """One event for several channels, one of them private-encrypted- (Pusher refuses it: the
    data is sealed with each channel's own key)."""

    slug = "encrypted-multi-channel"
    title = "Encrypted channel in a multi-channel event"


class InvalidEventName(BadRequest):
    """An event name is empty, too long, or reserved."""

    slug = "invalid-event-name"
    title = "Invalid event name"


class InvalidSocketId(BadRequest):
    """A socket id is not of the form digits.digits."""

    slug = "invalid-socket-id"
    title = "Invalid socket id"


class InvalidUserId(BadRequest):
    """A user id a provider could not address."""

    slug = "invalid-user-id"
    title = "Invalid user id"


class InvalidPayload(BadRequest):
    """The event data cannot be relayed as it is."""

    slug = "invalid-payload"
    title = "Invalid payload"


class NonFiniteNumber(InvalidPayload):
    """NaN, Infinity or a number too large for a double: JSON has no way to carry it."""

    status = 422
    slug = "non-finite-number"
    title = "Number not representable in JSON"


class TooManyItems(BadRequest):
    """A list (channels, batch) is longer than its limit."""

    slug = "too-many-items"
    title = "Too many items"


class PayloadTooLarge(BadRequest):
    """The encoded payload or body is larger than its limit."""

    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class Unauthenticated(RelayError):
    """No usable credential was presented."""

    status = 401
    slug = "unauthenticated"
    title = "Authentication required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="realtime-relay"'}


class InvalidToken(Unauthenticated):
    """A bearer token was presented and refused."""

    slug = "invalid-token"
    title = "Invalid token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="realtime-relay", error="invalid_token"'}


class InvalidSignature(Unauthenticated):
    """A request signature (Pusher HTTP API, webhook) does not verify."""

    slug = "invalid-signature"
    title = "Invalid signature"

    def headers(self) -> dict[str, str]:
        return {}


class Forbidden(RelayError):
    """The channel policy denied the action."""

    status = 403
    slug = "forbidden"
    title = "Forbidden by channel policy"


class OriginNotAllowed(Forbidden):
    """A browser origin that is not in RELAY_ALLOWED_ORIGINS."""

    slug = "origin-not-allowed"
    title = "Origin not allowed"


class IdempotencyInProgress(RelayError):
    """A request with the same Idempotency-Key is still being processed."""

    status = 409
    slug = "idempotency-in-progress"
    title = "A request with this Idempotency-Key is in progress"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class IdempotencyKeyReused(RelayError):
    """The Idempotency-Key was used before with a different request."""

    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class RateLimited(RelayError):
    """Too many requests; try again after `retry_after` seconds."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: float, **extra: Any) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(detail, retry_after=self.retry_after, **extra)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotFound(RelayError):
    """The addressed thing does not exist."""

    status = 404
    slug = "not-found"
    title = "Not found"


class HistoryGap(RelayError):
    """`since=` names an id the channel's history can no longer continue from: its epoch ended
    (the history was lost) or the messages after it expired or were trimmed."""

    status = 410
    slug = "history-gap"
    title = "History gap"


class NotSupported(RelayError):
    """The configured provider cannot do this."""

    status = 501
    slug = "not-supported"
    title = "Not supported by this provider"


class EncryptedChannelHistory(NotSupported):
    """The history of a `private-encrypted-` channel was asked for: the relay keeps none (it
    would keep the data unsealed), whatever the policy grants."""

    slug = "encrypted-channel-history"
    title = "Encrypted channels keep no relay history"


class ProviderError(RelayError):
    """The provider refused or failed a call; `retryable` says whether trying again may help."""

    status = 502
    slug = "provider-error"
    title = "Provider error"

    def __init__(self, detail: str, *, retryable: bool = False, **extra: Any) -> None:
        # `accepted: false`: the caller must not assume the provider took the message.
        super().__init__(detail, retryable=retryable, accepted=False, **extra)
        self.retryable = retryable


class ProviderUnavailable(ProviderError):
    """The provider cannot be reached or is failing; try later."""

    status = 503
    slug = "provider-unavailable"
    title = "Provider unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, retryable=True, **extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ProviderTimeout(ProviderError):
    """The provider took the request but did not answer in time: it may or may not have it."""

    status = 504
    slug = "provider-timeout"
    title = "Provider timed out"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, retryable=True, **extra)
        self.extra["accepted"] = None  # unknown: the request reached the provider unanswered


class TimeoutReplayed(ProviderTimeout):
    """The answer of an earlier request with this Idempotency-Key, whose outcome is still unknown:
    this repeat sent nothing."""

    def headers(self) -> dict[str, str]:
        return {"Idempotent-Replayed": "true"}
