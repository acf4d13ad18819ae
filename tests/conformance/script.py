"""The script language of the conformance suite: steps, exchanges, and the runner.

An exchange is a tuple of steps run in order against one server. Steps name clients ("a", "b")
that the runner opens on `Connect`; frames and patterns (patterns.py) may hold placeholders that
the runner fills in for the run: channel names get a suffix of their own, so exchanges never see
each other's subscribers on a server that serves them all.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conformance.patterns import (
    Chan,
    Json,
    Optional,
    SignedUserData,
    Unordered,
    User,
    mismatches,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from websockets.sync.client import ClientConnection

    from tests.conformance.servers import Server

# How long a frame may take to arrive (API Gateway under serverless-offline is the slowest).
RECEIVE_SECONDS: Final = 10.0
_RUNS = itertools.count(1)


# -- steps ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Open:
    """Open a client's socket and read nothing yet."""

    client: str


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a client's socket and read its pusher:connection_established (shape not checked)."""

    client: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A pusher:subscribe frame; `as_user` signs it the way the server expects, for the
    sender's socket or `signed_for` another's; `forged` sends a signature no secret made."""

    channel: Chan | str
    as_user: User | None = None
    signed_for: str | None = None
    forged: bool = False


@dataclass(frozen=True, slots=True)
class Signin:
    """A pusher:signin frame signed for the user the way the server expects; `forged` swaps
    the signature for one the server's secret did not make."""

    user: User
    forged: bool = False


@dataclass(frozen=True, slots=True)
class Send:
    """Send a frame: a JSON object (placeholders filled in), a Subscribe/Signin, or raw text."""

    client: str
    frame: dict[str, Any] | Subscribe | Signin | str


@dataclass(frozen=True, slots=True)
class Expect:
    """The client's next frame matches the pattern."""

    client: str
    pattern: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Quiet:
    """Nothing more reaches the client: after the server's settling time a pusher:ping is
    answered by the very next frame."""

    client: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The server closes the client's socket with this code."""

    client: str
    code: int


@dataclass(frozen=True, slots=True)
class Close:
    """The client closes its socket."""

    client: str


@dataclass(frozen=True, slots=True)
class Publish:
    """The backend publishes through `via` ("rest", "pusher_http"; None: the server's own)."""

    channel: Chan | str
    event: str
    data: Any
    exclude: str | None = None  # a client whose socket id is sent as socket_id
    via: str | None = None


@dataclass(frozen=True, slots=True)
class ToUser:
    """The backend sends an event to every socket signed in as the user."""

    user: User
    event: str
    data: Any


Step = Open | Connect | Send | Expect | Quiet | Closed | Close | Publish | ToUser


@dataclass(frozen=True, slots=True)
class Deviation:
    """What one server does instead of the exchange's script, and why that is accepted."""

    reason: str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One scripted exchange: the behaviour every server (with `needs`) must show."""

    name: str
    steps: tuple[Step, ...]
    needs: frozenset[str] = frozenset()  # features a server must have (servers.FEATURES)
    deviations: Mapping[str, Deviation] = field(default_factory=dict)  # server name -> what


# -- the runner -----------------------------------------------------------------------------------
FORGED_SIGNATURE: Final = "0" * 64


class Run:
    """One exchange against one server: its clients, and the values placeholders stand for."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.suffix = f"r{next(_RUNS)}-{time.monotonic_ns() % 10**6}"
        self.sockets: dict[str, ClientConnection] = {}
        self.socket_ids: dict[str, str] = {}
        self.user_data: dict[str, str] = {}

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        for socket in self.sockets.values():
            socket.close()

    def play(self, steps: tuple[Step, ...]) -> None:
        """Run the steps in order; an AssertionError names the failing step."""
        for number, step in enumerate(steps, start=1):
            try:
                self._step(step)
            except AssertionError as exc:
                raise AssertionError(f"step {number} {step!r}: {exc}") from None

    def _step(self, step: Step) -> None:
        match step:
            case Open(client):
                self.sockets[client] = connect(self.server.ws_url(), open_timeout=RECEIVE_SECONDS)
            case Connect(client):
                self._step(Open(client))
                frame = self._receive(client)
                assert frame.get("event") == "pusher:connection_established", frame
                self.socket_ids[client] = json.loads(frame["data"])["socket_id"]
            case Send(client, frame):
                self.sockets[client].send(self._encode(client, frame))
            case Expect(client, pattern):
                frame = self._receive(client)
                problems = mismatches(self.resolve(pattern), frame)
                assert not problems, f"{client} got {frame}: " + "; ".join(problems)
            case Quiet(client):
                time.sleep(self.server.settle_seconds)
                self.sockets[client].send('{"event":"pusher:ping","data":{}}')
                frame = self._receive(client)
                assert frame.get("event") == "pusher:pong", f"{client} got {frame}, not a pong"
            case Closed(client, code):
                self._closed(client, code)
            case Close(client):
                self.sockets.pop(client).close()
            case Publish(channel, event, data, exclude, via):
                excluded = None if exclude is None else self.socket_ids[exclude]
                self.server.publish(self.resolve(channel), event, data, exclude=excluded, via=via)
            case ToUser(user, event, data):
                self.server.send_to_user(user.id, event, data)

    def _receive(self, client: str) -> dict[str, Any]:
        try:
            text = self.sockets[client].recv(timeout=RECEIVE_SECONDS)
        except TimeoutError:
            raise AssertionError(f"{client} received nothing in {RECEIVE_SECONDS}s") from None
        except ConnectionClosed as exc:
            raise AssertionError(f"{client}'s socket closed: {exc}") from None
        frame = json.loads(text)
        assert isinstance(frame, dict), f"{client} got a frame that is no object: {text!r}"
        return frame

    def _closed(self, client: str, code: int) -> None:
        try:
            text = self.sockets[client].recv(timeout=RECEIVE_SECONDS)
        except TimeoutError:
            raise AssertionError(f"{client} stayed open for {RECEIVE_SECONDS}s") from None
        except ConnectionClosed as exc:
            got = None if exc.rcvd is None else exc.rcvd.code
            assert got == code, f"{client} closed with {got}, not {code}"
            return
        raise AssertionError(f"{client} got {text!r} instead of a close")

    def resolve(self, value: Any) -> Any:
        """The value with every placeholder replaced by what it stands for in this run."""
        match value:
            case Chan(name):
                return f"{name}-{self.suffix}"
            case SignedUserData(client):
                return self.user_data[client]
            case Json(pattern):
                return Json(self.resolve(pattern))
            case Optional(pattern):
                return Optional(self.resolve(pattern))
            case Unordered(items):
                return Unordered(tuple(self.resolve(i) for i in items))
            case dict():
                return {key: self.resolve(item) for key, item in value.items()}
            case list():
                return [self.resolve(item) for item in value]
        return value

    def _encode(self, client: str, frame: dict[str, Any] | Subscribe | Signin | str) -> str:
        match frame:
            case str():
                return frame
            case Subscribe():
                data = self._subscribe(client, frame)
                return json.dumps({"event": "pusher:subscribe", "data": data})
            case Signin(user, forged):
                signed = self.server.user_auth(self.socket_ids[client], user)
                if forged:
                    signed["auth"] = self._forged()
                self.user_data[client] = signed["user_data"]
                return json.dumps({"event": "pusher:signin", "data": signed})
        return json.dumps(self.resolve(frame))

    def _subscribe(self, client: str, frame: Subscribe) -> dict[str, str]:
        channel = self.resolve(frame.channel)
        data = {"channel": channel}
        if frame.as_user is not None:
            socket_id = self.socket_ids[frame.signed_for or client]
            data.update(self.server.channel_auth(socket_id, channel, frame.as_user))
        if frame.forged:
            data["auth"] = self._forged()
        return data

    def _forged(self) -> str:
        # Pusher's `key:signature` form, with the server's key and a signature no secret made.
        return f"{self.server.app_key}:{FORGED_SIGNATURE}"


def steps(*parts: Step | tuple[Step, ...]) -> tuple[Step, ...]:
    """A flat tuple of steps from steps and tuples of steps (shared openings)."""
    return tuple(_flatten(parts))


def _flatten(parts: tuple[Step | tuple[Step, ...], ...]) -> Iterator[Step]:
    for part in parts:
        if isinstance(part, tuple):
            yield from part
        else:
            yield part
