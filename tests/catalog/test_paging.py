"""Every catalog list call pages by cursor: all rows exactly once, in order, whatever the page
size, on SQLite and PostgreSQL; a rollback finds its target whatever the length of the history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import insert

from tarmac.catalog import Page, all_items
from tarmac.catalog import _tables as t
from tarmac.catalog import models as mcat
from tarmac.catalog import sources as state_store
from tarmac.errors import UsageError
from tarmac.project import Project


def _seed(p: Project) -> None:
    with p.catalog.write() as conn:
        for v in range(1, 8):
            conn.execute(insert(t.model_versions).values(
                model="m", version=v, run_id=f"r{v}", flavor="sklearn", task="binary",
                artifact="a" * 64, holdout="h" * 64, signature="{}", spec="{}", metrics="{}",
                profile="{}", tags="{}", created_at=v, actor="test"))
        for model in ("m", "n"):
            for alias in ("champion", "challenger", "shadow"):
                conn.execute(insert(t.model_aliases).values(
                    model=model, alias=alias, version=1, generation=1, updated_at=1, actor="t"))
        for i in range(1, 12):
            conn.execute(insert(t.alias_history).values(
                model="m", alias="champion", from_version=i - 1 or None, to_version=i % 7 + 1,
                action="promote", forced=0, at=i, actor="t"))
        for src in ("a", "b", "c"):
            for stream in ("s1", "s2"):
                conn.execute(insert(t.source_state).values(
                    source=src, stream=stream, table_name=f"{src}_{stream}", seq=0,
                    rows_total=0, updated_at=1))


def _pages(fetch: Callable[[str | None], Page[Any]]) -> list[list[Any]]:
    pages, cursor = [], None
    while True:
        page = fetch(cursor)
        pages.append(page.items)
        if not (cursor := page.next_cursor):
            return pages


def test_every_list_call_pages_without_gaps_or_repeats(any_project: Project) -> None:
    p = any_project
    _seed(p)
    cat = p.catalog

    versions = _pages(lambda c: mcat.versions(cat, "m", limit=3, cursor=c))
    assert [[v.version for v in page] for page in versions] == [[7, 6, 5], [4, 3, 2], [1]]

    aliases = [(a.model, a.alias) for a in all_items(
        lambda c: mcat.aliases(cat, limit=4, cursor=c))]
    assert aliases == [(m, a) for m in ("m", "n") for a in ("challenger", "champion", "shadow")]

    moves = _pages(lambda c: mcat.alias_history(cat, "m", "champion", limit=5, cursor=c))
    assert [len(page) for page in moves] == [5, 5, 1]
    assert [m.at for page in moves for m in page] == list(range(11, 0, -1))

    states = [(s.source, s.stream) for s in all_items(
        lambda c: state_store.list_states(cat, limit=4, cursor=c))]
    assert states == [(s, x) for s in ("a", "b", "c") for x in ("s1", "s2")]


def test_the_registry_pages_and_indexes_its_lists(any_project: Project) -> None:
    p = any_project
    _seed(p)
    first = p.models.versions("m", limit=2)
    assert [v.version for v in first] == [7, 6] and first[0].version == 7
    rest = p.models.versions("m", limit=10, cursor=first.next_cursor)
    assert [v.version for v in rest] == [5, 4, 3, 2, 1] and rest.next_cursor is None
    assert p.models.aliases() == {m: {"challenger": 1, "champion": 1, "shadow": 1}
                                  for m in ("m", "n")}
    assert len(p.models.history("m", "champion", limit=3)) == 3


def test_an_unbounded_page_is_refused(any_project: Project) -> None:
    with pytest.raises(UsageError, match="between 1 and 1000, got 1001"):
        mcat.versions(any_project.catalog, "m", limit=1001)
    with pytest.raises(UsageError, match="invalid page cursor"):
        state_store.list_states(any_project.catalog, cursor="garbage")


def test_last_move_to_finds_the_newest_move_onto_a_version(project: Project) -> None:
    _seed(project)
    move = mcat.last_move_to(project.catalog, "m", "champion", 5, action="promote")
    assert move is not None and (move.at, move.to_version) == (11, 5)
    assert mcat.last_move_to(project.catalog, "m", "champion", 99) is None
