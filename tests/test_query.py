"""cachehub.query: the Query table and query_new(), Lucee's queryNew()."""

from __future__ import annotations

import dataclasses

import pytest

from cachehub.errors import CacheValueError
from cachehub.query import Query, query_new


def test_query_new_mirrors_lucee_call() -> None:
    q = query_new("id,name", "integer,varchar", [[1, "Alice"], [2, "Bob"]])
    assert q.columns == ("id", "name")
    assert q.types == ("integer", "varchar")
    assert q.rows == ((1, "Alice"), (2, "Bob"))
    assert len(q) == 2
    assert list(q) == [{"id": 1, "name": "Alice"}, {"id": 2, "name": "Bob"}]
    assert q.column("name") == ["Alice", "Bob"]


@pytest.mark.parametrize(
    ("columns", "types", "expected_columns", "expected_types"),
    [
        (" id , name ", " INTEGER, cf_sql_varchar ", ("id", "name"), ("integer", "varchar")),
        (["id", "name"], ["bigint", "bit"], ("id", "name"), ("bigint", "bit")),
        ("id,name", None, ("id", "name"), None),
        ("id,name", "", ("id", "name"), None),
        ("", None, (), None),
    ],
)
def test_column_and_type_lists_are_parsed_like_cfml(
    columns: object,
    types: object,
    expected_columns: tuple[str, ...],
    expected_types: tuple[str, ...] | None,
) -> None:
    q = query_new(columns, types)  # type: ignore[arg-type]
    assert q.columns == expected_columns
    assert q.types == expected_types
    assert len(q) == 0
    assert list(q) == []


def test_rows_may_be_mappings_by_column_name() -> None:
    q = query_new("id,name", rows=[{"id": 1, "NAME": "Alice"}, {"id": 2}])
    assert q.rows == ((1, "Alice"), (2, None))


def test_column_lookup_is_case_insensitive_and_errors_name_the_columns() -> None:
    q = query_new("id,Name", rows=[[1, "A"]])
    assert q.column("Name") == ["A"]
    assert q.column("NAME") == ["A"]
    with pytest.raises(CacheValueError, match=r"no column 'email'.*id, Name"):
        q.column("email")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": "id,name", "rows": [[1]]}, r"row 0 has 1 cell\(s\) but the query has 2"),
        ({"columns": "id", "rows": [[1], [1, 2]]}, r"row 1 has 2 cell\(s\)"),
        ({"columns": "id,name", "types": "integer"}, r"2 column\(s\) but 1 type\(s\)"),
        ({"columns": "id", "types": "banana"}, r"unknown query column type 'banana'"),
        ({"columns": "id,ID"}, r"appears twice"),
        ({"columns": "id,,name"}, r"non-empty strings"),
        ({"columns": "id", "rows": ["ab"]}, r"expected a list or tuple, got str"),
        ({"columns": "id", "rows": [{"nope": 1}]}, r"unknown column\(s\): 'nope'"),
    ],
)
def test_invalid_tables_raise_cache_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CacheValueError, match=message):
        query_new(**kwargs)  # type: ignore[arg-type]


def test_query_constructor_normalises_lists_and_validates() -> None:
    q = Query(["a", "b"], [[1, 2], (3, 4)], ["integer", "INTEGER"])  # type: ignore[arg-type]
    assert q.columns == ("a", "b")
    assert q.rows == ((1, 2), (3, 4))
    assert q.types == ("integer", "integer")
    with pytest.raises(CacheValueError, match="row 0"):
        Query(("a",), ((1, 2),))
    with pytest.raises(CacheValueError, match="non-empty strings"):
        Query((1,))  # type: ignore[arg-type]


def test_equality_hash_and_immutability() -> None:
    a = query_new("id,name", "integer,varchar", [[1, "A"]])
    b = Query(("id", "name"), ((1, "A"),), ("integer", "varchar"))
    assert a == b
    assert hash(a) == hash(b)
    assert a != query_new("id,name", None, [[1, "A"]])
    assert a != query_new("id,name", "integer,varchar", [[2, "A"]])
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.rows = ()  # type: ignore[misc]
