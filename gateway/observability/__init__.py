"""What operators watch: request ids, the access log and Prometheus metrics.

- :mod:`~gateway.observability.request_id`: every request's id (``X-Request-Id``);
- :mod:`~gateway.observability.access_log`: one line per request (``--access-log``);
- :mod:`~gateway.observability.metrics`: the registry, the request figures and ``/metrics``;
- :mod:`~gateway.observability.collectors`: figures read at scrape time from the batcher,
  the metadata store, the audit log, the sweep and gc;
- :mod:`~gateway.observability.startup`: the start-up lines saying where the server listens.
"""

from __future__ import annotations

__all__: list[str] = []
