"""Requests aiohttp cannot parse (a control character in a header, two ``Host`` headers, a
line too long) are answered 400 before they reach the app, and aiohttp logs each at ERROR
with its traceback: a dozen lines that any client can have written as often as it likes,
and that page an operator for nothing wrong with the server. Their access log line (400,
route ``(unmatched)``) says what happened; the traceback is kept for ``--log-level debug``.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["quiet_client_errors"]


class _ClientErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or exc.code >= 500:
            return True
        logger = logging.getLogger(record.name)
        if not logger.isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def quiet_client_errors() -> None:
    """Log aiohttp's malformed-request errors at DEBUG instead of ERROR."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientErrorFilter) for f in server_log.filters):
        server_log.addFilter(_ClientErrorFilter())
