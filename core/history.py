"""Channel history the relay keeps in its store, with ids clients resume from.

Where a policy rule grants `history` (to anyone at all) and the provider keeps no history of its
own (every provider but Ably), each message published on the channel is recorded in the store
(memory, Redis or DynamoDB) after the provider took it; a channel the policy grants no history
costs no store call.

    id      `<epoch>:<seq>`: `seq` counts the channel's messages (1, 2, ...), `epoch` names one
            unbroken run of them. A channel whose history was lost (a memory store restarted, the
            whole log expired or was evicted) starts a new epoch, so an id of an ended epoch is
            recognised and never taken to mean "nothing was missed". Ids are opaque to clients:
            they compare them for equality only and send them back.
    since   `read(channel, since=id)`: what followed `id`, oldest first, at most `limit`, with
            `next` to continue from; HistoryGap (410) when the history cannot say: the epoch
            ended, or messages after `id` were trimmed (RELAY_HISTORY_MAX_MESSAGES) or expired
            (RELAY_HISTORY_TTL_SECONDS).

A rule may ask for the id inside each delivered event's data, for clients whose protocol has no
place for it (pusher-js: docs/recovery.md):

    options = { history = { envelope = true } }

then every event published there is delivered as `{"id": "<id>", "data": <data as published>}`;
history and SSE answer the data as published, with the id beside it.

End-to-end encrypted channels (`private-encrypted-`) are never recorded, whatever the policy
grants, and get no envelope: the relay records before the provider seals, so a record would keep
the plaintext the encryption exists to keep from the relay. Their history route answers
EncryptedChannelHistory (501 encrypted-channel-history).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, NamedTuple

import orjson
from msgspec import Struct, structs

from core.errors import BadRequest, ConfigurationError, EncryptedChannelHistory, HistoryGap
from core.policy import Action
from core.provider import Message
from core.validation import ChannelKind, channel_kind, check_payload_size

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from core.policy import Policy
    from core.policy.rules import Rule
    from core.provider import Limits
    from core.settings import Settings
    from core.stores import Store

log = logging.getLogger(__name__)

EPOCH_CHARACTERS = 8  # hex
_ID = re.compile(r"(?P<epoch>[0-9a-z]{1,32}):(?P<seq>[1-9][0-9]{0,18})", re.ASCII)
# The longest id this relay writes, for checking an envelope's size before the id exists.
_LONGEST_ID = "f" * EPOCH_CHARACTERS + ":" + "9" * 19


def is_encrypted(channel: str) -> bool:
    """Whether the channel is end-to-end encrypted (its history is never kept)."""
    return channel_kind(channel) is ChannelKind.PRIVATE_ENCRYPTED


def refuse_encrypted(channel: str) -> None:
    """EncryptedChannelHistory for a `private-encrypted-` channel; nothing for the others."""
    if is_encrypted(channel):
        raise EncryptedChannelHistory(
            "private-encrypted- channels keep no history in the relay: their data would be kept "
            "unsealed in its store, so it is never recorded (keep it, sealed, in your backend)",
            channel=channel,
        )


class HistoryId(NamedTuple):
    """A parsed id: the channel's epoch and the message's number in it."""

    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.seq}"


def is_id(text: str) -> bool:
    """Whether the text has the shape of a history id (the SSE replay log's are `<e>-<n>`)."""
    return _ID.fullmatch(text) is not None


def parse_id(text: str) -> HistoryId:
    """The epoch and number of an id this relay gave; BadRequest for anything else."""
    found = _ID.fullmatch(text)
    if found is None:
        raise BadRequest("not a history id this relay gives (<epoch>:<number>)")
    return HistoryId(found["epoch"], int(found["seq"]))


def envelope(history_id: str, data: str, *, json: bool) -> str:
    """The data a recovering client receives: the id beside the data as published."""
    value = orjson.Fragment(data) if json else data
    return orjson.dumps({"id": history_id, "data": value}).decode()


class Page(Struct, frozen=True):
    """Messages oldest first, and the id to read on from when more may follow."""

    messages: list[Message]
    next: str | None = None


class Pending(Struct, frozen=True):
    """Ids reserved for messages before the provider call, recorded once it took them."""

    messages: list[Message]
    logs: dict[str, tuple[str, list[Message]]]  # channel -> (epoch, its recorded messages)


class ChannelHistory:
    """Records published messages per channel and answers what followed an id."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        store: Store,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = settings.history_ttl_seconds
        self.keep = settings.history_max_messages
        self._limits = limits
        self._policy = policy
        self._clock = clock
        self._envelope: set[int] = set()  # rule indexes
        for rule in policy.rules:
            if _wants_envelope(rule, policy.source):
                self._envelope.add(rule.index)

    def recorded(self, rule: Rule | None) -> bool:
        """Whether the relay keeps the history of the channels `rule` governs."""
        return (
            rule is not None and bool(rule.terms(Action.HISTORY)) and not self._limits.keeps_history
        )

    def records(self, channel: str) -> bool:
        """Whether the relay keeps this channel's history (never an encrypted channel's)."""
        return self._keeps(channel, self._policy.rule_for(channel))

    def _keeps(self, channel: str, rule: Rule | None) -> bool:
        return self.recorded(rule) and not is_encrypted(channel)

    def check_envelope(self, message: Message, rule: Rule | None) -> None:
        """Refuse (413) a message whose enveloped data would be over the provider's limit."""
        if rule is not None and rule.index in self._envelope and self._keeps(message.channel, rule):
            check_payload_size(envelope(_LONGEST_ID, message.data, json=message.json), self._limits)

    async def reserve(
        self, messages: Sequence[Message], rules: Mapping[str, Rule | None]
    ) -> Pending:
        """Give each message on a recorded channel its id (one store call per such channel),
        the envelope where its rule asks for it. Encrypted channels get neither."""
        wanted: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            if self._keeps(message.channel, rules.get(message.channel)):
                wanted.setdefault(message.channel, []).append(index)
        out = list(messages)
        logs: dict[str, tuple[str, list[Message]]] = {}
        for channel, indexes in wanted.items():
            epoch, last = await self.store.log_reserve(
                channel, len(indexes), epoch=secrets.token_hex(EPOCH_CHARACTERS // 2), ttl=self.ttl
            )
            rule = rules.get(channel)
            wrap = rule is not None and rule.index in self._envelope
            recorded: list[Message] = []
            for seq, index in enumerate(indexes, start=last - len(indexes) + 1):
                message = out[index]
                history_id = str(HistoryId(epoch, seq))
                recorded.append(structs.replace(message, id=history_id, history_id=history_id))
                if wrap:
                    data = envelope(history_id, message.data, json=message.json)
                    message = structs.replace(message, data=data, json=True)
                out[index] = structs.replace(message, history_id=history_id)
            logs[channel] = (epoch, recorded)
        return Pending(out, logs)

    async def commit(self, pending: Pending) -> None:
        """Record what the provider took. A store failure now loses the entries (logged): the
        publish happened and must not be reported failed, which would bring a second one."""
        now = self._clock()
        for channel, (epoch, messages) in pending.logs.items():
            entries = [(_seq(m), _encode(m, now)) for m in messages]
            try:
                await self.store.log_append(channel, epoch, entries, ttl=self.ttl, keep=self.keep)
            except Exception:
                log.warning("history: %d message(s) on a channel not recorded", len(entries))

    async def read(self, channel: str, *, since: str | None, limit: int) -> Page:
        """The newest `limit` messages; or, after `since`, up to `limit` that followed it and
        the id to continue from. The history continues from an id while it still holds that
        id's message: HistoryGap when its epoch ended or the message was trimmed or expired."""
        if since is None:
            page = await self.store.log_read(channel, after=None, limit=limit)
            return Page(self._messages(channel, page.epoch, page.newest, page.entries))
        after = parse_id(since)
        page = await self.store.log_read(channel, after=after.seq - 1, limit=limit + 1)
        latest = None if page.epoch is None else str(HistoryId(page.epoch, page.newest))
        if page.epoch != after.epoch:
            raise HistoryGap(
                "the channel's history started again (a new epoch) since that id: what followed "
                "it is lost",
                channel=channel,
                latest=latest,
            )
        if after.seq > page.newest:
            raise BadRequest("since= names an id this channel's history has not reached")
        entries = page.entries
        kept = self._messages(channel, page.epoch, page.newest, entries[:1])
        if not entries or entries[0][0] != after.seq or not kept:
            raise HistoryGap(
                "the messages that followed that id were trimmed or expired",
                channel=channel,
                latest=latest,
            )
        entries = entries[1:]
        messages = self._messages(channel, page.epoch, page.newest, entries)
        more = len(entries) >= limit and entries[-1][0] < page.newest
        return Page(messages, messages[-1].id if more and messages else None)

    def _messages(
        self, channel: str, epoch: str | None, newest: int, entries: Sequence[tuple[int, bytes]]
    ) -> list[Message]:
        """The entries still kept: within the newest `keep` numbers, younger than the TTL."""
        floor = newest - self.keep
        expired_before = self._clock() - self.ttl
        return [
            _decode(channel, str(HistoryId(epoch or "", seq)), payload)
            for seq, payload in entries
            if seq > floor and _time(payload) > expired_before
        ]


def _wants_envelope(rule: Rule, source: str) -> bool:
    table = rule.options.get("history", {})
    where = f"{source}: rule #{rule.index} ({rule.pattern}) options.history"
    if not isinstance(table, dict) or set(table) - {"envelope"}:
        raise ConfigurationError(f"{where} must be a table with only `envelope` (true or false)")
    wanted = table.get("envelope", False)
    if not isinstance(wanted, bool):
        raise ConfigurationError(f"{where}.envelope must be true or false")
    if wanted and not rule.terms(Action.HISTORY):
        raise ConfigurationError(f"{where}.envelope: the rule grants no history, so no ids")
    return wanted


def _seq(message: Message) -> int:
    assert message.history_id is not None
    return parse_id(message.history_id).seq


def _encode(message: Message, now: float) -> bytes:
    return orjson.dumps([now, message.name, message.data, message.json])


def _time(payload: bytes) -> float:
    when: float = orjson.loads(payload)[0]
    return when


def _decode(channel: str, history_id: str, payload: bytes) -> Message:
    _, name, data, json = orjson.loads(payload)
    return Message(channel, name, data, id=history_id, json=json, history_id=history_id)
