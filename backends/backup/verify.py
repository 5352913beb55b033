"""Checks a live store: artifacts against their SHA-256s, artifact folders against the
metadata that names them, and the metadata's references against each other.

Findings are of four kinds:

- ``corrupt``: a file's bytes no longer hash to the SHA-256 stored with it (or, for files
  stored without one, to the one a backup's manifest recorded);
- ``missing``: a logged model's or model version's artifact folder is not where the
  metadata says, or a file a backup listed is gone while its run or model still exists;
- ``orphaned``: a file under the destination that no run, logged model, model version
  or experiment owns;
- ``inconsistent``: a row referring to one that does not exist (a run's experiment, a model
  version's run or logged model, an alias's version, a metric point's series...).

A run's folder is only looked for when a manifest lists files in it: a run that logged no
artifacts has none, and the metadata cannot tell the two apart.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from backends.artifacts.base import ArtifactStore, FileInfo
from backends.backup.artifacts import bounded, rehash, walk
from backends.backup.layout import ArtifactEntry, Progress
from backends.backup.metadata import Rows, open_rows
from backends.errors import NotFound

__all__ = ["Finding", "VerifyReport", "verify"]

Locate = Callable[[str], str | None]

# (what is wrong, a query returning the offending rows' keys): same SQL on both dialects.
_REFERENCES: tuple[tuple[str, str], ...] = (
    ("run's experiment does not exist",
     ("SELECT r.run_id FROM runs r LEFT JOIN experiments e"
     " ON e.experiment_id = r.experiment_id WHERE e.experiment_id IS NULL")),
    ("logged model's experiment does not exist",
     ("SELECT m.model_id FROM logged_models m LEFT JOIN experiments e"
     " ON e.experiment_id = m.experiment_id WHERE e.experiment_id IS NULL")),
    ("logged model's source run does not exist",
     ("SELECT m.model_id FROM logged_models m LEFT JOIN runs r ON r.run_id = m.source_run_id"
     " WHERE m.source_run_id IS NOT NULL AND r.run_id IS NULL")),
    ("model version's run does not exist",
     ("SELECT v.name || ' v' || v.version FROM model_versions v LEFT JOIN runs r"
     " ON r.run_id = v.run_id WHERE v.run_id IS NOT NULL AND v.run_id <> ''"
     " AND r.run_id IS NULL")),
    ("model version's logged model does not exist",
     ("SELECT v.name || ' v' || v.version FROM model_versions v LEFT JOIN logged_models m"
     " ON m.model_id = v.model_id WHERE v.model_id IS NOT NULL AND v.model_id <> ''"
     " AND m.model_id IS NULL")),
    ("alias points at a version that does not exist",
     ("SELECT a.name || '@' || a.alias FROM registered_model_aliases a"
     " LEFT JOIN model_versions v ON v.workspace = a.workspace AND v.name = a.name"
     " AND v.version = a.version WHERE v.version IS NULL")),
    ("run's model output is not a logged model",
     ("SELECT o.run_id || ' -> ' || o.model_id FROM run_model_outputs o"
     " LEFT JOIN logged_models m ON m.model_id = o.model_id WHERE m.model_id IS NULL")),
    ("metric series' run does not exist",
     ("SELECT s.run_id || ' ' || s.key FROM metric_series s LEFT JOIN runs r"
     " ON r.run_id = s.run_id WHERE r.run_id IS NULL")),
    ("metric points' series does not exist",
     ("SELECT DISTINCT p.series_id FROM metric_points p LEFT JOIN metric_series s"
     " ON s.series_id = p.series_id WHERE s.series_id IS NULL")),
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # corrupt, missing, orphaned, inconsistent
    subject: str  # an artifact path, or the row's key
    detail: str


@dataclass
class VerifyReport:
    files: int = 0
    bytes: int = 0
    checked: int = 0  # files re-hashed
    checked_bytes: int = 0
    unverifiable: int = 0  # re-hashed files with no SHA-256 to compare with
    external: int = 0  # artifact roots outside this destination, not checked
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def counts(self) -> dict[str, int]:
        out = {"corrupt": 0, "missing": 0, "orphaned": 0, "inconsistent": 0}
        for f in self.findings:
            out[f.kind] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"], out["counts"] = self.ok, self.counts()
        return out


@dataclass
class _Owners:
    """Destination paths of artifact roots: a file belongs to the root it lies under."""

    roots: dict[str, str] = field(default_factory=dict)  # path -> "run <id>" ...
    experiments: dict[str, str] = field(default_factory=dict)  # own only their direct files
    expected: dict[str, str] = field(default_factory=dict)  # folders that must exist
    external: int = 0

    def add(self, locate: Locate, uri: str | None, owner: str, *, expected: bool = False,
            experiment: bool = False) -> None:
        path = locate(uri) if uri else None
        if path is None:
            self.external += uri is not None and uri != ""
            return
        (self.experiments if experiment else self.roots)[path] = owner
        if expected:
            self.expected[path] = owner

    def owner(self, path: str) -> str | None:
        parent, _, _ = path.rpartition("/")
        if parent in self.experiments:
            return self.experiments[parent]
        while path:
            if path in self.roots:
                return self.roots[path]
            path = path.rpartition("/")[0]
        return self.roots.get("")


async def _owners(rows: Rows, locate: Locate) -> _Owners:
    owners = _Owners()
    for exp_id, location in await rows.all(
            "SELECT experiment_id, artifact_location FROM experiments"):
        owners.add(locate, location, f"experiment {exp_id}", experiment=True)
    for run_id, uri in await rows.all("SELECT run_id, artifact_uri FROM runs"):
        owners.add(locate, uri, f"run {run_id}")
    for model_id, location, status in await rows.all(
            "SELECT model_id, artifact_location, status FROM logged_models"):
        owners.add(locate, location, f"logged model {model_id}", expected=status == "READY")
    for name, version, location, status in await rows.all(
            "SELECT name, version, storage_location, status FROM model_versions"):
        owners.add(locate, location, f"model version {name} v{version}",
                   expected=status == "READY")
    return owners


async def verify(*, metadata_uri: str, store: ArtifactStore, locate: Locate,
                 sample: float = 1.0, manifest: Iterable[ArtifactEntry] = (),
                 progress: Progress, seed: int | None = None) -> VerifyReport:
    """Verify the store at ``metadata_uri`` and its artifacts destination ``store`` (open;
    the caller closes it). ``locate`` maps an artifact URI to its path in ``store`` (None:
    elsewhere). ``sample`` is the fraction of files re-hashed; ``manifest``, a backup's
    artifact list, tells which files should be there and their SHA-256s."""
    started = time.monotonic()
    report = VerifyReport()
    with progress("checking metadata references", len(_REFERENCES)) as update:
        async with open_rows(metadata_uri) as rows:
            for what, sql in _REFERENCES:
                for (key,) in await rows.all(sql):
                    report.findings.append(Finding("inconsistent", str(key), what))
                update(1)
            owners = await _owners(rows, locate)
    report.external = owners.external
    with progress("listing artifacts", None):
        files: list[FileInfo] = [info async for info in walk(store)]
    present = {f.path for f in files}
    folders = {p.rpartition("/")[0] for p in present}
    for folder in list(folders):
        while folder:
            folder = folder.rpartition("/")[0]
            folders.add(folder)
    report.files, report.bytes = len(files), sum(f.file_size or 0 for f in files)
    gone = set()
    for path, whose in sorted(owners.expected.items()):
        if path not in folders:
            gone.add(path)
            report.findings.append(Finding("missing", path, f"artifact folder of {whose}"))
    listed: dict[str, ArtifactEntry] = {}
    for entry in manifest:
        listed[entry.path] = entry
        owner = owners.owner(entry.path)
        # Files of a run or model deleted since the backup are not missing; those of a
        # folder already reported missing are not reported one by one.
        if entry.path not in present and owner is not None \
                and not any(entry.path.startswith(g + "/") for g in gone):
            report.findings.append(Finding("missing", entry.path,
                                           f"listed by the backup, owned by {owner}"))
    for info in files:
        if owners.owner(info.path) is None:
            report.findings.append(Finding("orphaned", info.path,
                                           "no run, logged model or experiment owns it"))
    rng = random.Random(seed)
    chosen = [f for f in files if sample >= 1.0 or rng.random() < sample]
    with progress("re-hashing artifacts", sum(f.file_size or 0 for f in chosen)) as update:
        async def one(info: FileInfo) -> tuple[FileInfo, str, int, str | None]:
            try:
                return (info, *await rehash(store, info.path, update))
            except NotFound:  # deleted since the listing
                return info, "", -1, None

        async for info, actual, size, stored in bounded(chosen, one):
            if size < 0:
                continue
            report.checked += 1
            report.checked_bytes += size
            expected = stored or (listed[info.path].sha256 if info.path in listed else None)
            if expected is None:
                report.unverifiable += 1
            elif actual != expected:
                source = "stored with it" if stored else "in the backup's manifest"
                report.findings.append(Finding(
                    "corrupt", info.path, f"SHA-256 is {actual}, {source}: {expected}"))
    order = {"inconsistent": 0, "missing": 1, "corrupt": 2, "orphaned": 3}
    report.findings.sort(key=lambda f: (order[f.kind], f.subject))
    report.seconds = round(time.monotonic() - started, 3)
    return report
