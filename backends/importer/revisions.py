"""The stock MLflow schema revisions the importer reads.

A stock backend store records its Alembic revision in ``alembic_version``. These are the
revisions MLflow 2.0 (``97727af70f4d``, August 2022) through 3.17 (``dc11669786a5``) leave a
database at, oldest first, from ``mlflow/store/db_migrations/versions``. Tables and columns
that older revisions lack are found by looking at the database itself (the readers' ``columns``),
so the list only decides what is refused: a revision not here comes from MLflow 1.x or from a
release newer than the importer, whose schema it cannot vouch for.
"""

from __future__ import annotations

__all__ = ["SUPPORTED", "UnsupportedRevision", "check_revision"]

SUPPORTED: tuple[str, ...] = (
    # MLflow 2.0-2.2
    "97727af70f4d",  # experiments.creation_time, last_update_time
    "3500859a5d39",  # registered_model_aliases
    "7f2a7d5fae7d",  # datasets, inputs, input_tags
    "2d6e25af4d3e",
    "acf3f17fdcc7",  # model_versions.storage_location
    "867495a8f9d4",  # traces (not imported)
    "5b0e9adcef9c",
    "4465047574b1",
    "f5a4f2784254",
    "0584bdc529eb",
    # MLflow 3.x
    "400f98739977",  # logged_models and their params, tags, metrics
    "6953534de441",  # inputs.step
    "bda7b8c39065",
    "cbc13b556ace",
    "770bee3ae1dd",
    "a1b2c3d4e5f6",
    "de4033877273",
    "1a0cddfcaa16",
    "534353b11cbc",
    "71994744cf8e",
    "3da73c924c2f",
    "bf29a5ff90ea",
    "1bd49d398cd23",
    "b7c8d9e0f1a2",
    "5d2d30f0abce",
    "c9d4e5f6a7b8",
    "2c33131f4dae",
    "d3e4f5a6b7c8",
    "d0e1f2a3b4c5",
    "c8d9e0f1a2b3",
    "1b5f0d9ad7c1",  # workspace columns, workspaces
    "e1f2a3b4c5d6",
    "76601a5f987d",
    "c3d6457b6d8a",
    "a5b4c3d2e1f0",
    "ae8bbe7743c9",
    "7d34483879f0",
    "da6fb0208061",
    "89d3d66ed43f",
    "b7e4c1a90f23",
    "a8b9c0d1e2f3",
    "c1d2e3f4a5b6",
    "c3d9e7f1a2b4",
    "6f8d9c3b2a1e",
    "1971f2d9a75b",
    "17e22815139b",
    "b7e2c1a4d9f3",
    "75868b020152",
    "dc11669786a5",  # MLflow 3.17
)


class UnsupportedRevision(ValueError):
    """The source's schema revision is not one the importer knows."""


def check_revision(revision: str | None) -> str:
    """``revision`` when supported; otherwise :class:`UnsupportedRevision` saying why."""
    if revision is None:
        raise UnsupportedRevision(
            "the source has no alembic_version table: not a stock MLflow database "
            "(or one never migrated)")
    if revision not in SUPPORTED:
        raise UnsupportedRevision(
            f"the source is at Alembic revision {revision!r}, which mlgate import does not "
            f"know; it reads the revisions of MLflow 2.0 to 3.17 ({SUPPORTED[0]} … "
            f"{SUPPORTED[-1]}). Upgrade the source with `mlflow db upgrade` to a release "
            "in that range, or use a newer mlgate")
    return revision
