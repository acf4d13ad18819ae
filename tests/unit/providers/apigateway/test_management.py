"""The management API client: answers classified by error code, kept-alive sockets, failures."""

from __future__ import annotations

import asyncio

import pytest

from providers.apigateway.management import (
    NETWORK_ERROR,
    NO_ANSWER,
    Answer,
    ManagementApi,
    error_code,
)
from providers.outbound.sigv4 import Credentials, Signer
from tests.e2e.harness import free_port
from tests.e2e.management_stub import ManagementStub, RawServer


@pytest.mark.parametrize(
    ("status", "headers", "body", "code"),
    [
        (200, {}, b"", None),
        (
            410,
            {"x-amzn-errortype": "GoneException:http://internal.amazon.com/"},
            b"{}",
            "GoneException",
        ),
        (410, {}, b"", "410"),  # serverless-offline: a bare status
        (400, {}, b'{"__type": "com.amazon#PayloadTooLargeException"}', "PayloadTooLargeException"),
        (429, {}, b'{"code": "LimitExceededException"}', "LimitExceededException"),
        (503, {}, b"<html>", "503"),
    ],
)
def test_error_code(status: int, headers: dict[str, str], body: bytes, code: str | None) -> None:
    assert error_code(status, headers, body) == code


def test_gone_is_decided_by_the_code() -> None:
    assert Answer(410, "GoneException").gone
    assert Answer(410, "410").gone
    assert not Answer(410, "ForbiddenException").gone  # the status alone is not enough
    assert Answer(429, "LimitExceededException").retryable
    assert Answer(502, "502").retryable
    assert NETWORK_ERROR.retryable
    assert not NO_ANSWER.retryable  # it may have been delivered
    assert not Answer(400, "PayloadTooLargeException").retryable
    assert Answer(204).ok


async def test_post_delete_and_kept_alive_sockets() -> None:
    async with ManagementStub() as stub:
        api = ManagementApi(stub.endpoint, None, max_connections=4)
        try:
            assert (await api.post("L0SM9cOFvHcCIhw=", b'{"event":"x"}')).ok
            assert (await api.post("L0SM9cOFvHcCIhw=", b"second")).ok
            assert (await api.delete("L0SM9cOFvHcCIhw=")).ok
            after = await api.post("L0SM9cOFvHcCIhw=", b"late")
            assert after.gone
            assert after.code == "GoneException"
        finally:
            await api.aclose()
    assert stub.bodies("L0SM9cOFvHcCIhw=") == [b'{"event":"x"}', b"second"]
    assert stub.deletes == ["L0SM9cOFvHcCIhw="]
    assert api.requests == 4


async def test_offline_gone_is_a_bare_410() -> None:
    async with ManagementStub(aws_errors=False, gone={"c1"}) as stub:
        api = ManagementApi(stub.endpoint, None)
        try:
            answer = await api.post("c1", b"x")
        finally:
            await api.aclose()
    assert (answer.status, answer.code, answer.gone) == (410, "410", True)


async def test_requests_are_signed_when_there_are_credentials() -> None:
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    signer = Signer(lambda: Credentials("AKID", "secret", "tok"), region="us-east-1")
    async with RawServer(serve) as server:
        api = ManagementApi(f"http://127.0.0.1:{server.port}/prod", signer)
        try:
            assert (await api.post("abc=", b"x")).ok
        finally:
            await api.aclose()
    head = seen[0].decode().lower()
    assert head.startswith("post /prod/@connections/abc%3d http/1.1")
    assert "authorization: aws4-hmac-sha256 credential=akid/" in head
    assert "x-amz-security-token: tok" in head


async def test_a_socket_closed_while_idle_is_replaced_once() -> None:
    answers = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answers
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(1)
        answers += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        # returning closes the socket: no connection is kept alive, without saying so

    async with RawServer(serve) as server:
        api = ManagementApi(f"http://127.0.0.1:{server.port}", None)
        try:
            assert (await api.post("a", b"1")).ok
            await asyncio.sleep(0.05)
            # The idle socket was dead: the post was sent again on a new one.
            assert (await api.post("b", b"2")).ok
        finally:
            await api.aclose()
    assert answers == 2


async def test_nothing_listening_is_a_network_error() -> None:
    api = ManagementApi(f"http://127.0.0.1:{free_port()}", None, timeout=1)
    try:
        assert await api.post("a", b"x") == NETWORK_ERROR
    finally:
        await api.aclose()


async def test_an_unanswered_post_is_not_retried() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    async with RawServer(serve) as server:
        api = ManagementApi(f"http://127.0.0.1:{server.port}", None, timeout=0.2)
        try:
            assert await api.post("a", b"x") == NO_ANSWER
        finally:
            await api.aclose()


def test_endpoint_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        ManagementApi("ftp://example.com", None)
