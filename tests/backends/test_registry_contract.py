"""The model-registry part of the MetadataStore contract, run over every implementation.

It uses the ``metadata_store`` fixture of ``test_metadata_contract.py`` (same parameters), so
a backend that joins that fixture runs these cases too.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from test_metadata_contract import ROOT, _run, metadata_store

from backends import errors
from backends.metadata.interface.entities import Tag
from backends.metadata.interface.store import MetadataStore

__all__ = ["metadata_store"]  # re-exported fixture

IS_PROMPT = "mlflow.prompt.is_prompt"


async def _version(store: MetadataStore, name: str, run_id: str, **kw: object) -> str:
    mv = await store.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, **kw)  # type: ignore[arg-type]
    return str(mv.version)


async def test_create_get_and_duplicate(metadata_store: MetadataStore) -> None:
    rm = await metadata_store.create_registered_model(
        "m", tags=[Tag("b", "1"), Tag("a", "2")], description="d")
    assert (rm.name, rm.description) == ("m", "d")
    assert rm.creation_timestamp == rm.last_updated_timestamp > 0
    got = await metadata_store.get_registered_model("m")
    assert got.tags == (Tag("b", "1"), Tag("a", "2"))  # order first set
    assert got.latest_versions == () and got.aliases == ()
    with pytest.raises(errors.AlreadyExists, match=r"Registered Model \(name=m\) already"):
        await metadata_store.create_registered_model("m")
    with pytest.raises(errors.AlreadyExists, match="already taken by a registered model"):
        await metadata_store.create_registered_model("m", tags=[Tag(IS_PROMPT, "true")])
    with pytest.raises(errors.NotFound, match="Registered Model with name=x not found"):
        await metadata_store.get_registered_model("x")


async def test_names_are_unique_per_workspace(metadata_store: MetadataStore) -> None:
    await metadata_store.create_registered_model("shared")
    await metadata_store.create_registered_model("shared", workspace="team-a")
    page = await metadata_store.search_registered_models(workspace="team-a")
    assert [m.name for m in page.items] == ["shared"]
    await metadata_store.delete_registered_model("shared", workspace="team-a")
    assert (await metadata_store.get_registered_model("shared")).name == "shared"


async def test_versions_numbering_stages_and_latest(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.create_registered_model("m")
    assert [await _version(metadata_store, "m", run_id) for _ in range(3)] == ["1", "2", "3"]
    await metadata_store.delete_model_version("m", 3)
    assert await _version(metadata_store, "m", run_id) == "4"  # numbers are never reused
    with pytest.raises(errors.NotFound, match=r"\(name=m, version=3\) not found"):
        await metadata_store.get_model_version("m", "3")
    with pytest.raises(errors.InvalidArgument, match="must be an integer"):
        await metadata_store.get_model_version("m", "x")

    await metadata_store.transition_model_version_stage("m", "1", "production")
    mv = await metadata_store.transition_model_version_stage(
        "m", "2", "Production", archive_existing_versions=True)
    assert mv.current_stage == "Production"
    assert (await metadata_store.get_model_version("m", 1)).current_stage == "Archived"
    with pytest.raises(errors.InvalidArgument, match="not an Active stage"):
        await metadata_store.transition_model_version_stage(
            "m", "1", "None", archive_existing_versions=True)
    with pytest.raises(errors.InvalidArgument, match="Invalid Model Version stage"):
        await metadata_store.transition_model_version_stage("m", "1", "Live")
    latest = await metadata_store.get_latest_versions("m")
    assert {(v.current_stage, v.version) for v in latest} == {
        ("Archived", 1), ("Production", 2), ("None", 4)}
    assert [v.version for v in await metadata_store.get_latest_versions("m", ["Production"])] \
        == [2]


async def test_tags_aliases_and_by_alias(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.create_registered_model("m")
    await _version(metadata_store, "m", run_id, tags=[Tag("t", "1")])
    await _version(metadata_store, "m", run_id)
    await metadata_store.set_registered_model_tag("m", Tag("k", "v"))
    await metadata_store.set_registered_model_tag("m", Tag("k", "w"))
    await metadata_store.set_model_version_tag("m", "1", Tag("t", "2"))
    await metadata_store.set_registered_model_alias("m", "champ", "1")
    await metadata_store.set_registered_model_alias("m", "a0", "2")
    await metadata_store.set_registered_model_alias("m", "champ", "2")  # moves
    rm = await metadata_store.get_registered_model("m")
    assert rm.tags == (Tag("k", "w"),)
    assert [(a.alias, a.version) for a in rm.aliases] == [("a0", 2), ("champ", 2)]
    mv = await metadata_store.get_model_version_by_alias("m", "champ")
    assert (mv.version, mv.aliases) == (2, ("a0", "champ"))
    assert (await metadata_store.get_model_version("m", 1)).tags == (Tag("t", "2"),)
    assert (await metadata_store.get_model_version_by_alias("m", "latest")).version == 2
    with pytest.raises(errors.NotFound):
        await metadata_store.set_registered_model_alias("m", "x", "9")
    await metadata_store.delete_registered_model_alias("m", "a0")
    await metadata_store.delete_registered_model_tag("m", "k")
    await metadata_store.delete_model_version_tag("m", "1", "t")
    await metadata_store.delete_model_version("m", "2")  # drops the aliases pointing at it
    rm = await metadata_store.get_registered_model("m")
    assert rm.tags == () and rm.aliases == ()
    with pytest.raises(errors.InvalidArgument, match="alias champ not found"):
        await metadata_store.get_model_version_by_alias("m", "champ")


async def test_rename_and_delete_carry_everything(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.create_registered_model("old", tags=[Tag("k", "v")])
    await _version(metadata_store, "old", run_id, tags=[Tag("t", "v")])
    await metadata_store.set_registered_model_alias("old", "champ", "1")
    await metadata_store.create_registered_model("taken")
    with pytest.raises(errors.AlreadyExists):
        await metadata_store.rename_registered_model("old", "taken")
    rm = await metadata_store.rename_registered_model("old", "new")
    assert rm.name == "new" and rm.tags == (Tag("k", "v"),)
    mv = await metadata_store.get_model_version_by_alias("new", "champ")
    assert mv.tags == (Tag("t", "v"),) and mv.name == "new"
    with pytest.raises(errors.NotFound):
        await metadata_store.get_registered_model("old")
    await metadata_store.delete_registered_model("new")
    with pytest.raises(errors.NotFound):
        await metadata_store.get_model_version("new", "1")
    await metadata_store.create_registered_model("new")  # the name is free again
    assert await _version(metadata_store, "new", run_id) == "1"


async def test_version_from_logged_model(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    exp_id = (await metadata_store.get_run(run_id)).info.experiment_id
    model = await metadata_store.create_logged_model(exp_id, name="model", source_run_id=run_id)
    await metadata_store.create_registered_model("m")
    for expected in (1, 2):
        mv = await metadata_store.create_model_version(
            "m", f"models:/{model.model_id}", model_id=model.model_id)
        assert mv.version == expected
        assert mv.run_id == run_id  # filled from the logged model
    assert await metadata_store.get_model_version_download_uri("m", "1") == model.artifact_uri
    tags = {t.key: t.value for t in (await metadata_store.get_logged_model(model.model_id)).tags}
    assert json.loads(tags["mlflow.modelVersions"]) == [
        {"name": "m", "version": 1}, {"name": "m", "version": 2}]
    with pytest.raises(errors.InvalidArgument, match="Unable to fetch model"):
        await metadata_store.create_model_version("m", "models:/m-" + "0" * 32)
    with pytest.raises(errors.NotFound):
        await metadata_store.create_model_version("nope", f"runs:/{run_id}/x", run_id=run_id)


async def test_search_filters_order_and_pages(metadata_store: MetadataStore) -> None:
    run_id = await _run(metadata_store)
    for name in ("alpha", "Beta", "gamma"):
        await metadata_store.create_registered_model(name, tags=[Tag("team", name[0])])
        await _version(metadata_store, name, run_id)
    await metadata_store.create_registered_model("p", tags=[Tag(IS_PROMPT, "true")])
    await metadata_store.create_model_version("p", "dummy-source",
                                              tags=[Tag(IS_PROMPT, "true")])

    async def names(**kw: object) -> list[str]:
        page = await metadata_store.search_registered_models(**kw)  # type: ignore[arg-type]
        return [m.name for m in page.items]

    assert await names() == ["Beta", "alpha", "gamma"]  # prompts hidden; name ASC
    assert await names(filter_string="name LIKE '%a'") == ["Beta", "alpha", "gamma"]
    assert await names(filter_string="name ILIKE 'b%'") == ["Beta"]
    assert await names(filter_string="name IN ('alpha', 'p')") == ["alpha"]
    assert await names(filter_string="tags.team = 'g' AND name != 'x'") == ["gamma"]
    assert await names(filter_string="tags.`mlflow.prompt.is_prompt` = 'true'") == ["p"]
    assert await names(order_by=["name DESC"]) == ["gamma", "alpha", "Beta"]
    first = await metadata_store.search_registered_models(max_results=2)
    assert [m.name for m in first.items] == ["Beta", "alpha"] and first.next_page_token
    rest = await metadata_store.search_registered_models(
        max_results=2, page_token=first.next_page_token)
    assert [m.name for m in rest.items] == ["gamma"] and rest.next_page_token is None
    for bad in ("name = 1", "tags.x > 'a'", "run_id = 'x'", "name = 'a' OR name = 'b'"):
        with pytest.raises(errors.InvalidArgument):
            await names(filter_string=bad)
    with pytest.raises(errors.InvalidArgument):
        await names(order_by=["creation_time"])

    async def versions(**kw: object) -> list[tuple[str, int]]:
        page = await metadata_store.search_model_versions(**kw)  # type: ignore[arg-type]
        return [(v.name, v.version) for v in page.items]

    assert len(await versions()) == 3
    assert await versions(filter_string="name = 'alpha'") == [("alpha", 1)]
    assert await versions(filter_string=f"run_id = '{run_id}' AND version_number >= 1",
                          order_by=["name ASC"]) == [("Beta", 1), ("alpha", 1), ("gamma", 1)]
    assert await versions(filter_string="name = 'p'") == []
    assert await versions(filter_string="source_path LIKE 'runs:/%'", max_results=1) == [
        await versions(order_by=["last_updated_timestamp DESC"], max_results=1)][0]
    with pytest.raises(errors.InvalidArgument):
        await versions(filter_string="version_number = 1.5")
    with pytest.raises(errors.InvalidArgument):
        await versions(filter_string="source_path IN ('a')")


async def test_concurrent_version_creation_gets_distinct_numbers(
    metadata_store: MetadataStore,
) -> None:
    run_id = await _run(metadata_store)
    await metadata_store.create_registered_model("m")
    made = await asyncio.gather(*(_version(metadata_store, "m", run_id) for _ in range(10)))
    assert sorted(made, key=int) == [str(i) for i in range(1, 11)]


def test_root_is_the_proxy_scheme() -> None:
    assert ROOT == "mlflow-artifacts:"
