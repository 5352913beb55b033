"""``mlgate import``: a stock MLflow server's data brought into mlgate's stores.

:mod:`sources` reads a stock database (one reader per kind), :mod:`tables` says what each
stock table becomes, :mod:`job` copies them resumably, :mod:`artifacts` copies the artifact
tree and :mod:`report` compares both sides.
"""

from __future__ import annotations

from backends.importer.job import Importer
from backends.importer.readers import open_reader
from backends.importer.report import Report, compare
from backends.importer.revisions import SUPPORTED, UnsupportedRevision
from backends.importer.sources import StockReader

__all__ = ["SUPPORTED", "Importer", "Report", "StockReader", "UnsupportedRevision", "compare",
           "open_reader"]
