"""The audit log's writer process (``python -m gateway.audit_helper``), one per gateway
process, started by :class:`gateway.audit.AuditHelper` on the first batch.

Writing a batch's JSON lines and rows took the gateway's serving thread 13k-28k instructions
per audited request (log-metric with auth on PostgreSQL, callgrind; runs vary by +-10k):
here they run beside it, on another core. The gateway keeps every record until this
process answers that it is stored, so a crash of this process loses none
(:meth:`gateway.audit.AuditLog.flush`).

Protocol, over the standard streams (the real stdout is kept for it; anything else printed
goes to stderr): the gateway sends one frame of ``{"uri": ..., "options": {...}}`` (the
metadata store, never on the command line; opened on the first batch to store, and again
on the next one if that failed), then batches: a 4-byte length, a byte of flags (LINES:
write their JSON lines; STORE: store them) and the rows as a JSON array of arrays. For each
batch this process does as asked (:func:`gateway.audit.log_json_lines`,
:func:`gateway.audit.store_rows`) and answers one byte: 0 done, or 1 followed by a 4-byte
length and a message (the lines, if asked for, were written). End of input: it closes the
store and exits. It ignores SIGINT and SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import BinaryIO

import orjson

from backends.metadata.base import MetadataStore
from backends.registry import open_metadata_store
from gateway.audit import (
    FRAME_HEAD,
    FRAME_LENGTH,
    LINES,
    STORE,
    add_json_lines_handler,
    log_json_lines,
    store_rows,
)


async def serve(reader: asyncio.StreamReader, out: BinaryIO) -> None:
    (size,) = FRAME_LENGTH.unpack(await reader.readexactly(FRAME_LENGTH.size))
    config = orjson.loads(await reader.readexactly(size))
    store: MetadataStore | None = None
    try:
        while True:
            try:
                head = await reader.readexactly(FRAME_HEAD.size)
            except asyncio.IncompleteReadError:
                return  # the gateway closed our input: its flush is done
            size, flags = FRAME_HEAD.unpack(head)
            rows = [tuple(row) for row in orjson.loads(await reader.readexactly(size))]
            try:
                if flags & LINES:
                    rows = log_json_lines(rows)
                if flags & STORE:
                    if store is None:  # opened here, so a database that is down is retried
                        opened = open_metadata_store(config["uri"], **config["options"])
                        await opened.open()
                        store = opened
                    await store_rows(store, rows)
                reply = b"\0"
            except Exception as exc:  # noqa: BLE001 - told to the gateway, which retries
                message = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:4000]
                reply = b"\1" + FRAME_LENGTH.pack(len(message)) + message
            out.write(reply)
            out.flush()
    finally:
        if store is not None:
            await store.aclose()


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # The protocol's replies go to the real stdout; a stray print goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    await serve(reader, out)


def main() -> None:
    # Its life follows the gateway's through the input pipe: a Ctrl-C or a SIGTERM to the
    # whole process group must not end it before the gateway has drained its queue into it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    add_json_lines_handler()
    asyncio.run(_main())


if __name__ == "__main__":
    main()
