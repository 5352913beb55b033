"""What an import brought over: rows per entity on both sides, and a checksum of every
metric history compared between them.

A history's checksum is the number of its points and the sum (mod 2**64) of a hash of each
point (timestamp, step, value, is_nan): a sum does not depend on the order the points are
read in, so neither side has to sort them, and a point missing, extra, duplicated or
changed shows. Python's hash of numbers is the same in every process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from backends.importer.sources import StockReader
from backends.metadata.sql.tracking import SqlMetadataStore

__all__ = ["Count", "Report", "compare"]

_MASK = (1 << 64) - 1
_SERIES_PER_READ = 200

_PROMPTS = ("SELECT COUNT(*) FROM registered_model_tags"
            " WHERE \"key\" = 'mlflow.prompt.is_prompt' AND LOWER(value) = 'true'")
# entity: (stock's count query, mlgate's count query); None where the source lacks the table
_COUNTS: dict[str, tuple[str, str]] = {
    "experiments": ("SELECT COUNT(*) FROM experiments", "SELECT COUNT(*) FROM experiments"),
    "experiment tags": ("SELECT COUNT(*) FROM experiment_tags",
                        "SELECT COUNT(*) FROM experiment_tags"),
    "runs": ("SELECT COUNT(*) FROM runs", "SELECT COUNT(*) FROM runs"),
    "deleted runs": ("SELECT COUNT(*) FROM runs WHERE lifecycle_stage = 'deleted'",
                     "SELECT COUNT(*) FROM runs WHERE lifecycle_stage = 'deleted'"),
    "params": ("SELECT COUNT(*) FROM params", "SELECT COUNT(*) FROM run_params"),
    "tags": ("SELECT COUNT(*) FROM tags", "SELECT COUNT(*) FROM run_tags"),
    "latest metrics": ("SELECT COUNT(*) FROM latest_metrics",
                       "SELECT COUNT(*) FROM metric_series"),
    "metric points": ("SELECT COUNT(*) FROM metrics", "SELECT COUNT(*) FROM metric_points"),
    "datasets": ("SELECT COUNT(*) FROM datasets", "SELECT COUNT(*) FROM datasets"),
    "inputs": ("SELECT COUNT(*) FROM inputs",
               ("SELECT (SELECT COUNT(*) FROM run_dataset_inputs)"
                " + (SELECT COUNT(*) FROM run_model_inputs)"
                " + (SELECT COUNT(*) FROM run_model_outputs)")),
    "input tags": ("SELECT COUNT(*) FROM input_tags",
                   "SELECT COUNT(*) FROM run_dataset_input_tags"),
    "logged models": ("SELECT COUNT(*) FROM logged_models",
                      "SELECT COUNT(*) FROM logged_models"),
    "logged model params": ("SELECT COUNT(*) FROM logged_model_params",
                            "SELECT COUNT(*) FROM logged_model_params"),
    "logged model tags": ("SELECT COUNT(*) FROM logged_model_tags",
                          "SELECT COUNT(*) FROM logged_model_tags"),
    "logged model metrics": ("SELECT COUNT(*) FROM logged_model_metrics",
                             "SELECT COUNT(*) FROM logged_model_metrics"),
    "registered models": ("SELECT COUNT(*) FROM registered_models",
                          "SELECT COUNT(*) FROM registered_models"),
    "prompts": (_PROMPTS, _PROMPTS),
    "registered model tags": ("SELECT COUNT(*) FROM registered_model_tags",
                              "SELECT COUNT(*) FROM registered_model_tags"),
    "model versions": ("SELECT COUNT(*) FROM model_versions",
                       "SELECT COUNT(*) FROM model_versions"),
    "model version tags": ("SELECT COUNT(*) FROM model_version_tags",
                           "SELECT COUNT(*) FROM model_version_tags"),
    "aliases": ("SELECT COUNT(*) FROM registered_model_aliases",
                "SELECT COUNT(*) FROM registered_model_aliases"),
}


@dataclass(frozen=True)
class Count:
    entity: str
    source: int
    destination: int

    @property
    def equal(self) -> bool:
        return self.source == self.destination


@dataclass
class Report:
    counts: list[Count] = field(default_factory=list)
    histories: int = 0  # metric histories in the source
    histories_differing: list[tuple[str, str]] = field(default_factory=list)  # (run, key)
    source_checksum: str = ""
    destination_checksum: str = ""

    @property
    def ok(self) -> bool:
        return all(c.equal for c in self.counts) and not self.histories_differing \
            and self.source_checksum == self.destination_checksum

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": {c.entity: {"source": c.source, "destination": c.destination}
                       for c in self.counts},
            "metric_histories": self.histories,
            "metric_histories_differing": [list(p) for p in self.histories_differing[:100]],
            "metric_checksum": {"source": self.source_checksum,
                                "destination": self.destination_checksum},
        }


def _add(sums: dict[tuple[str, str], list[int]], run_id: str, key: str, timestamp: int,
         step: int, value: float, is_nan: Any) -> None:
    entry = sums.get((run_id, key))
    if entry is None:
        entry = sums[(run_id, key)] = [0, 0]
    entry[0] += 1
    entry[1] = (entry[1] + hash((int(timestamp), int(step), float(value), int(is_nan)))) & _MASK


def _digest(sums: dict[tuple[str, str], list[int]]) -> str:
    h = hashlib.sha256()
    for (run_id, key), (n, total) in sorted(sums.items()):
        h.update(f"{run_id}\0{key}\0{n}\0{total}\n".encode())
    return h.hexdigest()


async def _source_sums(reader: StockReader) -> dict[tuple[str, str], list[int]]:
    sums: dict[tuple[str, str], list[int]] = {}
    if "metrics" not in await reader.tables():
        return sums
    columns = ('"run_uuid"', '"key"', '"timestamp"', '"step"', '"value"', '"is_nan"')
    async for rows in reader.scan("metrics", columns, None, 100_000):
        for r in rows:
            _add(sums, r[0], r[1], r[2], r[3], r[4], r[5])
    return sums


async def _destination_sums(store: SqlMetadataStore) -> dict[tuple[str, str], list[int]]:
    sums: dict[tuple[str, str], list[int]] = {}
    async with store._read() as db:
        found = await db.fetch_rows("SELECT series_id, run_id, key FROM metric_series")
    names = {int(r[0]): (r[1], r[2]) for r in found}
    ids = sorted(names)
    for i in range(0, len(ids), _SERIES_PER_READ):
        chunk = ids[i:i + _SERIES_PER_READ]
        async with store._read() as db:
            points = await db.fetch_rows(
                "SELECT series_id, timestamp, step, value, is_nan FROM metric_points"
                f" WHERE series_id IN ({','.join('?' * len(chunk))})", chunk)
        for r in points:
            _add(sums, *names[int(r[0])], r[1], r[2], r[3], r[4])
    return sums


async def _counts(reader: StockReader, store: SqlMetadataStore) -> Iterable[Count]:
    present = await reader.tables()

    async with store._read() as db:
        destination = {entity: int((await db.fetch_rows(sql))[0][0])
                       for entity, (_, sql) in _COUNTS.items()}
    out = []
    for entity, (sql, _) in _COUNTS.items():
        table = sql.split(" FROM ", 1)[1].split()[0]
        source = int((await reader.fetch(sql))[0][0]) if table in present else 0
        out.append(Count(entity, source, destination[entity]))
    return out


async def compare(reader: StockReader, store: SqlMetadataStore) -> Report:
    """Count both sides and compare every metric history."""
    report = Report(counts=list(await _counts(reader, store)))
    source, destination = await _source_sums(reader), await _destination_sums(store)
    report.histories = len(source)
    report.histories_differing = sorted(
        pair for pair in source.keys() | destination.keys()
        if source.get(pair) != destination.get(pair))
    report.source_checksum, report.destination_checksum = _digest(source), _digest(destination)
    return report
