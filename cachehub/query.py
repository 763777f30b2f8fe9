"""A small tabular value, like the query objects Lucee's ``queryNew()`` builds.

A :class:`Query` is an immutable table: named columns, rows of cells, and optional column
types. The safe codec stores it exactly, so query results can be cached and read back as
the same table::

    q = query_new("id,name", "integer,varchar", [[1, "Alice"], [2, "Bob"]])
    len(q)              # 2
    list(q)             # [{'id': 1, 'name': 'Alice'}, {'id': 2, 'name': 'Bob'}]
    q.column("name")    # ['Alice', 'Bob']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import CacheValueError

__all__ = ["COLUMN_TYPES", "Query", "query_new"]

COLUMN_TYPES: Final[frozenset[str]] = frozenset(
    {
        # CFML's own query column types (queryNew's documented list) ...
        "object",
        "integer",
        "bigint",
        "double",
        "decimal",
        "varchar",
        "binary",
        "bit",
        "time",
        "date",
        "timestamp",
        # ... and the SQL types Lucee accepts with or without the ``cf_sql_`` prefix.
        "array",
        "blob",
        "boolean",
        "char",
        "clob",
        "datalink",
        "datetime",
        "distinct",
        "float",
        "longnvarchar",
        "longvarbinary",
        "longvarchar",
        "nchar",
        "nclob",
        "null",
        "numeric",
        "nvarchar",
        "other",
        "real",
        "ref",
        "refcursor",
        "smallint",
        "sqlxml",
        "struct",
        "tinyint",
        "varbinary",
        "varchar2",
    }
)
"""Column type names :class:`Query` accepts (lower case, without ``cf_sql_``)."""

_SQL_PREFIX: Final = "cf_sql_"


@dataclass(frozen=True, slots=True)
class Query:
    """An immutable table of rows, like a CFML query object.

    ``columns`` are the column names (unique, compared case-insensitively as in CFML),
    ``rows`` one tuple of cells per row, each as wide as ``columns``, and ``types`` the
    optional column types (see :data:`COLUMN_TYPES`), one per column. Types are recorded,
    not enforced on the cells. Lists are accepted for every field and stored as tuples.

    Iterating yields each row as a ``{column: cell}`` dict; ``len()`` is the row count.
    Two queries are equal when their columns, rows and types are equal.

    Raises:
        CacheValueError: a column name is empty, duplicated or not a string, a row's
            width differs from the column count, or a type is unknown or miscounted.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...] = ()
    types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        columns = _names(self.columns)
        types = None if self.types is None else _types(self.types, len(columns))
        rows = tuple(_row(row, index, columns) for index, row in enumerate(_seq(self.rows)))
        # frozen: the normalised fields are set once, here, through object.__setattr__
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "types", types)

    def __len__(self) -> int:
        """The number of rows."""
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Each row as a ``{column: cell}`` dict, in row order."""
        columns = self.columns
        for row in self.rows:
            yield dict(zip(columns, row, strict=True))

    def column(self, name: str) -> list[Any]:
        """The cells of column ``name`` (matched case-insensitively), top to bottom.

        Raises:
            CacheValueError: no column has that name.
        """
        index = self._index(name)
        return [row[index] for row in self.rows]

    def _index(self, name: str) -> int:
        if name in self.columns:  # exact match first: the common, cheap case
            return self.columns.index(name)
        folded = [column.casefold() for column in self.columns]
        if isinstance(name, str) and name.casefold() in folded:
            return folded.index(name.casefold())
        raise CacheValueError(
            f"the query has no column {name!r}.",
            hint=f"use one of its columns: {', '.join(self.columns) or '(none)'}.",
        )


def query_new(
    columns: str | Sequence[str],
    types: str | Sequence[str] | None = None,
    rows: Sequence[Sequence[Any] | Mapping[str, Any]] = (),
) -> Query:
    """Build a :class:`Query` the way Lucee's ``queryNew()`` does.

    ``columns`` and ``types`` are comma-separated lists (``"id,name"``) or sequences of
    names; an empty string means no columns / no types. Type names are case-insensitive
    and may carry the ``cf_sql_`` prefix. Each row is either a sequence of cells in column
    order or a mapping of column name to cell (missing columns become ``None``)::

        query_new("id,name", "integer,varchar", [[1, "Alice"], [2, "Bob"]])
        query_new(["id", "name"], rows=[{"id": 1, "name": "Alice"}])

    Raises:
        CacheValueError: the columns, types or rows do not fit together (see :class:`Query`).
    """
    names = _split(columns)
    kinds = None if types is None else _split(types)
    if kinds == ():
        kinds = None  # queryNew("a,b", "") means "no types given"
    cells = tuple(_cells(row, index, names) for index, row in enumerate(_seq(rows)))
    return Query(names, cells, kinds)


def _split(spec: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(spec, str):
        return tuple(part.strip() for part in spec.split(",")) if spec.strip() else ()
    return tuple(_seq(spec))


def _seq(value: Any) -> tuple[Any, ...]:
    # str and bytes are sequences too, but never a list of names, types or rows
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Sequence):
        raise CacheValueError(
            f"expected a list or tuple, got {type(value).__name__}.",
            hint="pass rows as a list of lists, and columns/types as a list or 'a,b' string.",
        )
    return tuple(value)


def _names(columns: Any) -> tuple[str, ...]:
    names = _seq(columns)
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise CacheValueError(
                f"query column names must be non-empty strings, got {name!r}.",
                hint="name every column, e.g. query_new('id,name').",
            )
        if name.casefold() in seen:
            raise CacheValueError(
                f"the query column {name!r} appears twice (names are case-insensitive).",
                hint="give every column a distinct name.",
            )
        seen.add(name.casefold())
    return names


def _types(types: Any, width: int) -> tuple[str, ...]:
    kinds = _seq(types)
    if len(kinds) != width:
        raise CacheValueError(
            f"the query has {width} column(s) but {len(kinds)} type(s).",
            hint="give one type per column, or no types at all.",
        )
    normalised = []
    for kind in kinds:
        name = kind.strip().lower() if isinstance(kind, str) else kind
        if isinstance(name, str) and name.startswith(_SQL_PREFIX):
            name = name[len(_SQL_PREFIX) :]
        if name not in COLUMN_TYPES:
            raise CacheValueError(
                f"unknown query column type {kind!r}.",
                hint="use a CFML column type such as integer, bigint, double, decimal, "
                "varchar, bit, date, time, timestamp, binary or object.",
            )
        normalised.append(name)
    return tuple(normalised)


def _row(row: Any, index: int, columns: tuple[str, ...]) -> tuple[Any, ...]:
    cells = _seq(row)
    if len(cells) != len(columns):
        raise CacheValueError(
            f"query row {index} has {len(cells)} cell(s) but the query has "
            f"{len(columns)} column(s) ({', '.join(columns) or 'none'}).",
            hint="give every row exactly one cell per column, in column order.",
        )
    return cells


def _cells(row: Any, index: int, columns: tuple[str, ...]) -> Any:
    if not isinstance(row, Mapping):
        return row  # a sequence: checked by Query itself
    folded = {column.casefold(): column for column in columns}
    unknown = [key for key in row if not isinstance(key, str) or key.casefold() not in folded]
    if unknown:
        raise CacheValueError(
            f"query row {index} names unknown column(s): {', '.join(map(repr, unknown))}.",
            hint=f"use the query's columns: {', '.join(columns) or '(none)'}.",
        )
    by_column = {folded[key.casefold()]: value for key, value in row.items()}
    return tuple(by_column.get(column) for column in columns)
