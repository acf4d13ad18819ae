"""supabase-js takes the JWT the relay mints, through `realtime.setAuth`, end to end.

`relay serve` runs on the supabase provider against a local stand-in for Supabase Realtime (the
real service is out of reach here): a Phoenix socket at /realtime/v1/websocket speaking the JSON
wire format supabase-js uses, and the batch broadcast endpoint. The stand-in verifies the token a
private join carries as Realtime does (HS256 with the project's JWT secret, `exp`, `role`) and
fans a REST broadcast out to the joined sockets as Realtime's BatchBroadcast does. What this does
not prove: that Supabase's servers accept the token, or run the compiled RLS (tests/db does that).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import orjson
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from tests import servers
from tests.e2e.conftest import API_KEY, JWT_SECRET, RELAY_ENV
from tests.e2e.harness import ROOT, RelayProcess

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from starlette.requests import Request
    from starlette.websockets import WebSocket

pytestmark = pytest.mark.e2e

SUPABASE_SECRET = "e2e-supabase-jwt-secret-0123456789abcdef"
SERVICE_KEY = "e2e-service-role-key-0123456789"
ANON_KEY = "e2e-anon-key"
SCRIPT = ROOT / "tests" / "e2e" / "js" / "supabase_setauth.mjs"
CHANNEL = "private-user-alice"


class FakeRealtime:
    """Realtime's socket and broadcast endpoint, recording what supabase-js and the relay send."""

    def __init__(self) -> None:
        self.joins: list[dict[str, Any]] = []
        self.access_tokens: list[str] = []
        self.broadcast_calls: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.sockets: list[tuple[WebSocket, str, bool]] = []  # (socket, topic, private)
        self.app = Starlette(
            routes=[
                WebSocketRoute("/realtime/v1/websocket", self.socket),
                Route("/realtime/v1/api/broadcast", self.broadcast, methods=["POST"]),
            ]
        )

    @staticmethod
    def verify(token: object) -> dict[str, Any]:
        """As Realtime's JwtVerification: signature, a future exp, a numeric iat; then the role."""
        if not isinstance(token, str):
            raise jwt.InvalidTokenError("no access_token")
        claims: dict[str, Any] = jwt.decode(
            token,
            SUPABASE_SECRET,
            algorithms=["HS256"],
            options={"require": ["exp", "iat"], "verify_aud": False},
        )
        if claims.get("role") != "authenticated":
            raise jwt.InvalidTokenError("role")
        return claims

    async def socket(self, ws: WebSocket) -> None:
        """A Phoenix socket, vsn 2.0.0 JSON frames: [join_ref, ref, topic, event, payload]."""
        await ws.accept()
        with contextlib.suppress(Exception):
            while True:
                join_ref, ref, topic, event, payload = json.loads(await ws.receive_text())
                reply: dict[str, Any] = {"status": "ok", "response": {}}
                if event == "phx_join":
                    self.joins.append({"topic": topic, **payload})
                    private = bool(payload.get("config", {}).get("private"))
                    try:
                        if private:
                            self.verify(payload.get("access_token"))
                        self.sockets.append((ws, topic, private))
                    except jwt.InvalidTokenError as exc:
                        reply = {"status": "error", "response": {"reason": str(exc)}}
                elif event == "access_token":
                    self.access_tokens.append(payload.get("access_token"))
                await ws.send_text(json.dumps([join_ref, ref, topic, "phx_reply", reply]))

    async def broadcast(self, request: Request) -> Response:
        """The batch endpoint: service role key required, then fan out to joined sockets."""
        headers = {k: request.headers.get(k, "") for k in ("apikey", "authorization")}
        body = orjson.loads(await request.body())
        self.broadcast_calls.append((headers, body))
        if headers != {"apikey": SERVICE_KEY, "authorization": f"Bearer {SERVICE_KEY}"}:
            return JSONResponse({"message": "Error authorizing the request"}, status_code=401)
        for message in body["messages"]:
            frame = {"type": "broadcast", "event": message["event"], "payload": message["payload"]}
            if "id" in message:
                frame["meta"] = {"id": message["id"]}
            for ws, topic, private in self.sockets:
                if topic == "realtime:" + message["topic"] and private == message["private"]:
                    await ws.send_text(json.dumps([None, None, topic, "broadcast", frame]))
        return Response(status_code=202)


@contextlib.asynccontextmanager
async def serving(fake: FakeRealtime) -> AsyncIterator[int]:
    """The fake on a free port of 127.0.0.1, in this event loop."""
    async with servers.serve(fake.app, lifespan="off") as server:
        yield server.port


def _node_command() -> list[str]:
    node = shutil.which("node")
    assert node is not None, "node is not installed: install Node.js 20"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    # Node 20 has WebSocket (which supabase-js needs) only behind a flag; 22 has it built in.
    return [node, "--experimental-websocket"] if major < 22 else [node]


def _relay_token() -> str:
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "exp": now + 600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def test_supabase_js_joins_with_the_minted_token_receives_and_refreshes(
    tmp_path: Path,
) -> None:
    fake = FakeRealtime()
    async with serving(fake) as port:
        supabase_url = f"http://127.0.0.1:{port}"
        env = {
            **RELAY_ENV,
            "RELAY_PROVIDER": "supabase",
            "SUPABASE_URL": supabase_url,
            "SUPABASE_SERVICE_ROLE_KEY": SERVICE_KEY,
            "SUPABASE_JWT_SECRET": SUPABASE_SECRET,
        }
        relay = await asyncio.to_thread(RelayProcess, env, tmp_path / "relay.log")
        config = {
            "relayBase": relay.base,
            "userToken": _relay_token(),
            "supabaseUrl": supabase_url,
            "anonKey": ANON_KEY,
            "channel": CHANNEL,
        }
        node = await asyncio.create_subprocess_exec(
            *_node_command(),
            str(SCRIPT),
            json.dumps(config),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        seen: list[dict[str, Any]] = []
        receipt: dict[str, Any] = {}
        try:
            async with asyncio.timeout(40), httpx.AsyncClient(base_url=relay.base) as http:
                assert node.stdout is not None
                async for line in node.stdout:
                    seen.append(json.loads(line))
                    if seen[-1] == {"type": "status", "status": "SUBSCRIBED", "error": None}:
                        published = await http.post(
                            "/v1/events",
                            json={"name": "greeting", "channel": CHANNEL, "data": {"text": "hi"}},
                            headers={"X-API-Key": API_KEY},
                        )
                        assert published.status_code == 200, published.text
                        receipt = published.json()["receipts"][0]
                assert await node.wait() == 0, seen
        finally:
            if node.returncode is None:
                node.kill()
            relay.stop()

    kinds = [o["type"] for o in seen]
    expected = ["token", "anonymous_token", "status", "broadcast", "refreshed", "status", "done"]
    assert kinds == expected, seen
    assert [o["status"] for o in seen if o["type"] == "status"] == ["SUBSCRIBED", "CLOSED"]
    token = seen[0]["body"]["access_token"]
    claims = jwt.decode(token, SUPABASE_SECRET, algorithms=["HS256"], audience="authenticated")
    assert (claims["sub"], claims["role"]) == ("alice", "authenticated")
    assert seen[1]["status"] == 401
    # supabase-js sent the minted token on the private join, and the stand-in accepted it.
    (join,) = fake.joins
    assert join["topic"] == f"realtime:{CHANNEL}"
    assert join["config"]["private"] is True
    assert join["access_token"] == token
    # The relay's publish reached supabase-js through the broadcast endpoint.
    (headers, body), *_ = fake.broadcast_calls
    assert headers["apikey"] == SERVICE_KEY
    assert body["messages"][0]["private"] is True
    message = seen[3]["message"]
    assert message["event"] == "greeting"
    assert message["payload"] == {"text": "hi"}
    assert message["meta"]["id"] == receipt["id"]
    # setAuth with a fresh token sends it on the joined channel.
    refreshed = seen[4]["access_token"]
    assert refreshed != token
    assert fake.access_tokens == [refreshed]
    assert fake.verify(refreshed)["sub"] == "alice"
