"""A TCP proxy in front of PostgreSQL or MariaDB for outage tests: ``cut()`` drops every
connection and stops listening (connections are refused), ``restore()`` listens again on
the same port; ``stall()`` holds every byte in both directions (a hung network path:
connections stay open and nothing arrives), ``flow()`` lets them through again;
``deafen()`` lets the client's bytes through but drops the server's (a statement runs, its
answer is lost), ``drop()`` aborts the open connections and keeps listening."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

__all__ = ["TcpProxy", "proxied"]


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._deaf = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def deafen(self) -> None:
        self._deaf = True

    def drop(self) -> None:
        self._deaf = False
        for w in list(self._writers):
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    answers: bool = False) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if answers and self._deaf:
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer),
                                 self._pipe(up_reader, writer, answers=True))
        finally:
            self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        self.drop()  # RST, as when a network path or the server goes away

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        self.flow()
        if self._server is not None:
            await self.cut()


async def proxied(dsn: str) -> tuple[TcpProxy, str]:
    """A started proxy in front of ``dsn``'s server, and ``dsn`` pointing at the proxy."""
    parts = urlsplit(dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0] + "@" if len(netloc) == 2 else ""
    return proxy, urlunsplit((parts.scheme, f"{user}127.0.0.1:{proxy.port}", parts.path, "", ""))
