"""Rate limits: token buckets per caller and per client IP, and per policy rule where it says so.

A rule may set its own limits in the policy file:

    options = { rate_limit = { publish = { per_second = 5, burst = 10 } } }

(keys: `auth`, a client's requests: channel auth, sign-in, tokens, streams, channel queries;
`publish`, messages and a backend's other requests), counted per caller on that rule. Which
requests count against which kind is decided in core.authorizing and core.publishing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeGuard

from msgspec import Struct

from core.errors import ConfigurationError, RateLimited, TooManyItems
from core.stores.base import Bucket

if TYPE_CHECKING:
    from collections.abc import Iterable

    from core.policy import Policy
    from core.policy.rules import Rule
    from core.principal import Principal
    from core.settings import Settings
    from core.stores.base import Store

Kind = Literal["auth", "publish"]


class Rate(Struct, frozen=True):
    """Tokens per second, and the bucket's size (the largest burst)."""

    per_second: float
    burst: float


class RateLimiter:
    """Takes tokens from every bucket a request counts against; refuses with 429 if one is empty."""

    def __init__(self, settings: Settings, store: Store, policy: Policy) -> None:
        self.enabled = settings.rate_limits
        self.store = store
        self._rates: dict[Kind, Rate] = {
            "auth": Rate(settings.rate_auth_per_second, settings.rate_auth_burst),
            "publish": Rate(settings.rate_publish_per_second, settings.rate_publish_burst),
        }
        self._ip_multiplier = settings.rate_ip_multiplier
        self._rule_rates = {rule.index: rule_rates(rule, policy.source) for rule in policy.rules}

    async def check(
        self,
        kind: Kind,
        principal: Principal,
        client_ip: str | None,
        *,
        cost: int = 1,
        rules: Iterable[tuple[Rule, int]] = (),
    ) -> None:
        """Raise RateLimited unless every bucket this request counts against has its tokens.

        `cost` counts against the caller and the IP; each `(rule, n)` against that rule's own
        limit. Tokens are taken from all the buckets or from none."""
        if not self.enabled:
            return
        rate = self._rates[kind]
        buckets: list[tuple[str, Rate, int]] = []
        if principal.id:
            caller = f"{principal.kind}:{principal.id}"
            buckets.append((f"{kind}:{caller}", rate, cost))
        else:  # an anonymous caller is its address: one bucket, the IP's
            caller = f"ip:{client_ip}"
        if client_ip is not None:
            buckets.append((f"{kind}:ip:{client_ip}", self._ip_rate(kind), cost))
        for rule, count in rules:
            own = self._rule_rates.get(rule.index, {}).get(kind)
            if own is not None:
                buckets.append((f"{kind}:rule{rule.index}:{caller}", own, count))
        for _, bucket, n in buckets:
            if n > bucket.burst:  # no wait would ever let it through: not a matter of time
                raise TooManyItems(
                    f"{n} {kind} requests at once exceed the rate limit's burst of "
                    f"{bucket.burst:g}",
                    limit=int(bucket.burst),
                )
        if not buckets:
            return
        # All or nothing: a refused request costs nobody anything (else one caller retrying
        # behind an office NAT drains everyone's IP bucket). One store call for them all.
        wait = await self.store.take_all(
            [Bucket(key, bucket.per_second, bucket.burst, n) for key, bucket, n in buckets]
        )
        if wait > 0:
            raise RateLimited(f"too many {kind} requests; try again shortly", retry_after=wait)

    def _ip_rate(self, kind: Kind) -> Rate:
        """An IP may carry many callers (offices, carriers): its bucket is that much larger."""
        rate, m = self._rates[kind], self._ip_multiplier
        return Rate(rate.per_second * m, rate.burst * m)

    async def failed_credential(self, client_ip: str | None) -> None:
        """A credential was refused: count it against the IP, so guessing keys is throttled."""
        if self.enabled and client_ip is not None:
            rate = self._ip_rate("auth")
            wait = await self.store.take(
                f"auth:ip:{client_ip}", rate=rate.per_second, burst=rate.burst
            )
            if wait > 0:
                raise RateLimited(
                    "too many refused credentials; try again shortly", retry_after=wait
                )


def rule_rates(rule: Rule, source: str) -> dict[Kind, Rate]:
    """A rule's own limits from `options.rate_limit`, checked when the policy loads."""
    table: Any = rule.options.get("rate_limit", {})
    where = f"{source}: rule #{rule.index} ({rule.pattern}) options.rate_limit"
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where} must be a table")
    rates: dict[Kind, Rate] = {}
    for kind, spec in table.items():
        if kind not in ("auth", "publish"):
            raise ConfigurationError(f"{where}: unknown kind {kind!r} (auth, publish)")
        spec = spec if isinstance(spec, dict) else {}
        per_second, burst = spec.get("per_second"), spec.get("burst", spec.get("per_second"))
        if not (_positive(per_second) and _positive(burst)):
            raise ConfigurationError(f"{where}.{kind} needs positive per_second (and burst)")
        rates[kind] = Rate(float(per_second), float(burst))
    return rates


def _positive(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
