"""The TCP proxy itself, against a tiny echo server: each mode does what the suite relies on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@contextlib.asynccontextmanager
async def connected(
    proxy: TcpProxy,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_pass_delay_and_counters(echo: int) -> None:
    async with TcpProxy("127.0.0.1", echo) as proxy, connected(proxy) as (reader, writer):
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        proxy.delay = 0.2
        started = time.monotonic()
        writer.write(b"slow")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"slow"
        assert time.monotonic() - started >= 0.4  # delayed each way
        assert (proxy.connections, proxy.active) == (1, 1)
        assert (proxy.bytes_up, proxy.bytes_down) == (9, 9)


async def test_blackhole_reads_but_never_answers(echo: int) -> None:
    async with TcpProxy("127.0.0.1", echo) as proxy:
        async with connected(proxy) as (reader, writer):
            writer.write(b"before")
            assert await asyncio.wait_for(reader.readexactly(6), 5) == b"before"
            proxy.set_mode("blackhole")
            writer.write(b"lost")
            await proxy.wait_for(lambda: proxy.bytes_up == 10)  # read by the proxy...
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.3)  # ...and never answered
        async with connected(proxy) as (reader, writer):  # new connections: the same
            writer.write(b"new")
            await proxy.wait_for(lambda: proxy.bytes_up == 13)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.3)


async def test_reset_existing_and_new_connections(echo: int) -> None:
    async with TcpProxy("127.0.0.1", echo) as proxy:
        async with connected(proxy) as (reader, writer):
            writer.write(b"x")
            await asyncio.wait_for(reader.readexactly(1), 5)
            proxy.set_mode("reset")
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(1), 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 5)
        writer.close()
        assert proxy.connections == 2


async def read_until_closed(reader: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await asyncio.wait_for(reader.read(100), 5):
        into += chunk


async def test_cut_once_after_n_bytes(echo: int) -> None:
    async with TcpProxy("127.0.0.1", echo) as proxy:
        async with connected(proxy) as (reader, writer):
            proxy.cut_once_after(10)
            writer.write(b"0123456789ABCDEF")
            got = bytearray()
            with pytest.raises(ConnectionResetError):
                await read_until_closed(reader, got)
            assert len(got) <= 10
            assert proxy.cuts == 1
        async with connected(proxy) as (reader, writer):  # once only
            writer.write(b"0123456789ABCDEF")
            assert await asyncio.wait_for(reader.readexactly(16), 5) == b"0123456789ABCDEF"


async def test_cut_once_on_a_pattern(echo: int) -> None:
    async with TcpProxy("127.0.0.1", echo) as proxy, connected(proxy) as (reader, writer):
        proxy.cut_once_on(b"KILLME")
        writer.write(b"fine")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"fine"
        writer.write(b"xxKILLMExx")
        got = bytearray()
        with pytest.raises(ConnectionResetError):
            await read_until_closed(reader, got)
        assert got == b""  # the chunk with the pattern never went through
        assert proxy.cuts == 1
