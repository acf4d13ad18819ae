"""Rules and the who-terms they grant an action to.

A rule pairs a channel pattern with, for each action, a list of terms; any one term grants (OR).

    anyone            every caller, anonymous included
    user              any signed-in end user
    backend           a server holding an API key
    user:VALUE        the user whose id equals VALUE (`user:{id}` binds it from the pattern)
    claim:NAME=VALUE  a user whose claim NAME equals VALUE, or contains it when the claim is a list
    subscriber        (client_events only) a connection whose subscription to the channel was
                      authorized; asked outside a socket, whoever the rule lets subscribe
    hook              whatever the policy's Python hook decides

VALUE is literal text or a template of the pattern's placeholders. Claims compare as strings and
only when they are strings or integers: `true` never equals "True", `null` never equals "None".
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from msgspec import Struct, field

from core.policy.decisions import Action, Allow, AllowPresence, Decision, Deny
from core.policy.patterns import PatternError, Template
from core.principal import Principal

if TYPE_CHECKING:
    from collections.abc import Collection

    from core.policy.patterns import Pattern

log = logging.getLogger(__name__)

Hook: TypeAlias = Callable[[Principal, Action, str, Mapping[str, str]], Decision]
"""`hook(principal, action, channel, params) -> Allow | AllowPresence | Deny`, synchronous."""

# The TOML key of each action's term list.
ACTION_KEYS: Mapping[str, Action] = MappingProxyType(
    {
        "subscribe": Action.SUBSCRIBE,
        "publish": Action.PUBLISH,
        "client_events": Action.CLIENT_EVENT,
        "history": Action.HISTORY,
    }
)


class Verdict(NamedTuple):
    """One term's answer: whether it grants, why, and whether a login could have made it grant."""

    granted: bool
    detail: str
    needs_login: bool = False
    hook_decision: Decision | None = None  # what the hook returned, when it granted

    @property
    def text(self) -> str:
        """The verdict as `relay policy explain` shows it."""
        return f"{'yes' if self.granted else 'no'}: {self.detail}"


class Context(Struct, frozen=True):
    """What a term is evaluated against."""

    principal: Principal
    action: Action
    channel: str
    params: Mapping[str, str]
    hook: Hook | None
    # Whether the caller is a subscriber of the channel, for the `subscriber` term: set by the
    # engine for client events only (a live connection's subscription, or the subscribe verdict).
    subscription: Verdict | None = None


class Term(Struct, frozen=True):
    """One way to be granted an action; `text` is the term as written in the policy."""

    text: str

    def evaluate(self, ctx: Context) -> Verdict:
        """Whether this term grants the action in this context (each kind of term says)."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.text


def _not_a_user(principal: Principal) -> Verdict:
    return Verdict(False, f"{principal.describe()} is not a signed-in user", needs_login=True)


class Anyone(Term, frozen=True):
    """Every caller, anonymous included."""

    def evaluate(self, ctx: Context) -> Verdict:
        return Verdict(True, "anyone may")


class AnyUser(Term, frozen=True):
    """Any signed-in end user."""

    def evaluate(self, ctx: Context) -> Verdict:
        if ctx.principal.is_user:
            return Verdict(True, f"{ctx.principal.describe()} is signed in")
        return _not_a_user(ctx.principal)


class Backend(Term, frozen=True):
    """A backend holding an API key."""

    def evaluate(self, ctx: Context) -> Verdict:
        if ctx.principal.is_backend:
            return Verdict(True, f"{ctx.principal.describe()} is a backend")
        # An anonymous caller could have sent an API key: a 401 tells it so.
        return Verdict(False, f"{ctx.principal.describe()} is not a backend", needs_login=True)


class UserIs(Term, frozen=True):
    """The user whose id equals the value, by exact string equality."""

    value: Template

    def evaluate(self, ctx: Context) -> Verdict:
        if not ctx.principal.is_user:
            return _not_a_user(ctx.principal)
        expected = self.value.render(ctx.params)
        if ctx.principal.id == expected:
            return Verdict(True, f"user {ctx.principal.id!r} is {expected!r}")
        return Verdict(False, f"user {ctx.principal.id!r} is not {expected!r}", needs_login=True)


def _claim_text(value: object) -> str | None:
    # bool is an int subclass: without this check `true` would compare equal to "True".
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


class ClaimIs(Term, frozen=True):
    """A user whose claim equals the value, or contains it when the claim is a list."""

    claim: str
    value: Template

    def evaluate(self, ctx: Context) -> Verdict:
        """Grants to a user whose claim holds the value; never echoes the claim itself."""
        if not ctx.principal.is_user:
            return _not_a_user(ctx.principal)
        expected = self.value.render(ctx.params)
        if self.claim not in ctx.principal.claims:
            return Verdict(False, f"user has no claim {self.claim!r}", needs_login=True)
        actual = ctx.principal.claims[self.claim]
        if isinstance(actual, list | tuple):
            if expected in {_claim_text(item) for item in actual}:
                return Verdict(True, f"claim {self.claim!r} includes {expected!r}")
            return Verdict(
                False, f"claim {self.claim!r} does not include {expected!r}", needs_login=True
            )
        if _claim_text(actual) == expected:
            return Verdict(True, f"claim {self.claim!r} is {expected!r}")
        return Verdict(False, f"claim {self.claim!r} is not {expected!r}", needs_login=True)


class Subscriber(Term, frozen=True):
    """A subscriber of the channel; grants client events only (the loader refuses it elsewhere).

    On a socket the session asks for a connection already subscribed, whose subscription the policy
    authorized when it was signed: that proof stands even when the socket itself never signed in
    (Laravel Echo never does). Asked without a connection (`relay policy explain`, token grants),
    it grants whom the rule's own `subscribe` terms grant.
    """

    def evaluate(self, ctx: Context) -> Verdict:
        if ctx.action is not Action.CLIENT_EVENT or ctx.subscription is None:
            return Verdict(False, "subscriber grants client events only")
        return ctx.subscription


class HookTerm(Term, frozen=True):
    """Whatever the policy's Python hook decides; a failing hook denies."""

    def evaluate(self, ctx: Context) -> Verdict:
        """Call the hook, turning anything but a decision into a denying verdict."""
        if ctx.hook is None:  # Policy refuses a hook term without a hook; this narrows the type
            return Verdict(False, "the policy has no hook")
        try:
            result: object = ctx.hook(ctx.principal, ctx.action, ctx.channel, dict(ctx.params))
        except Exception as exc:
            log.exception(
                "policy hook raised on %s %s by %s",
                ctx.action.value,
                ctx.channel,
                ctx.principal.describe(),
            )
            # The exception text may hold anything; the type name is enough for a 403 detail.
            return Verdict(False, f"hook raised {type(exc).__name__}")
        if isinstance(result, Allow | AllowPresence):
            return Verdict(True, f"hook allowed: {result.reason}", hook_decision=result)
        if isinstance(result, Deny):
            return Verdict(False, f"hook denied: {result.reason}", result.unauthenticated)
        if inspect.iscoroutine(result):
            result.close()  # never awaited: close it so no RuntimeWarning escapes
        log.error("policy hook returned %s, not a Decision", type(result).__name__)
        return Verdict(False, f"hook returned {type(result).__name__}, not a Decision")


_SIMPLE_TERMS: Mapping[str, Callable[[str], Term]] = MappingProxyType(
    {
        "anyone": Anyone,
        "user": AnyUser,
        "backend": Backend,
        "subscriber": Subscriber,
        "hook": HookTerm,
    }
)


def parse_term(text: str, placeholders: Collection[str]) -> Term:
    """Parse one term, raising ValueError that says what is wrong with it."""
    if text in _SIMPLE_TERMS:
        return _SIMPLE_TERMS[text](text)
    kind, colon, rest = text.partition(":")
    try:
        if colon and kind == "user":
            return UserIs(text, Template.parse(rest, placeholders))
        if colon and kind == "claim":
            name, equals, value = rest.partition("=")
            if not equals or not name or name != name.strip():
                raise PatternError("write claim:NAME=VALUE")
            return ClaimIs(text, name, Template.parse(value, placeholders))
    except PatternError as exc:
        raise ValueError(f"term {text!r}: {exc}") from exc
    raise ValueError(
        f"unknown term {text!r} (known: anyone, user, backend, subscriber, hook, user:ID, "
        "claim:NAME=VALUE)"
    )


class Rule(Struct, frozen=True):
    """A channel pattern, the terms that grant each action, and what presence shares."""

    compiled: Pattern
    permissions: Mapping[Action, tuple[Term, ...]]
    presence_info: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)  # free-form, for other gates
    index: int = 0  # 1-based position in the policy source

    @property
    def pattern(self) -> str:
        """The pattern as written in the policy."""
        return self.compiled.text

    @property
    def uses_hook(self) -> bool:
        """True when some action of this rule lists the `hook` term."""
        return any(isinstance(t, HookTerm) for terms in self.permissions.values() for t in terms)

    def terms(self, action: Action) -> tuple[Term, ...]:
        """The terms that grant `action`; empty means nobody may."""
        return self.permissions.get(action, ())

    def match(self, channel: str) -> dict[str, str] | None:
        """The placeholders this rule's pattern binds in `channel`, or None."""
        return self.compiled.match(channel)
