"""Backup, restore and verify of a metadata store and its artifacts destination.

``layout`` says where a backup keeps what, ``metadata`` snapshots and restores the database
(SQLite through its online backup API, PostgreSQL through ``COPY`` in one repeatable-read
transaction), ``artifacts`` lists, hashes and copies artifacts, ``verify`` checks a live
store. ``jobs`` ties them into the three operations the ``mlgate`` commands run. Nothing here
imports the gateway: the caller passes how an artifact URI maps to a destination path.
"""

from __future__ import annotations

from backends.backup.jobs import BackupReport, RestoreReport, backup, restore
from backends.backup.layout import NotEmpty, Progress, no_progress
from backends.backup.verify import Finding, VerifyReport, verify

__all__ = [
    "BackupReport",
    "Finding",
    "NotEmpty",
    "Progress",
    "RestoreReport",
    "VerifyReport",
    "backup",
    "no_progress",
    "restore",
    "verify",
]
