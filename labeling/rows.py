"""Model instances from hand-written SQL, for the few request paths where the ORM's own cost shows.

Claim and submit run on every label an annotator gives. Building a queryset (filters, joins, ordering,
compiling) costs about a millisecond of CPU per query on a small server core, several times the database's
own work; those paths write their statements once, as text, and turn rows back into model instances here,
with the same field conversions the ORM applies (JSON text to objects, SQLite's text dates and UUIDs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)
Converter = Callable[[Any, Any, Any], Any]


@cache
def _layout(model: type[Model], vendor: str) -> tuple[list[str], list[tuple[Any, list[Converter]]]]:
    """Return the model's attribute names and, per column, its expression and value converters."""
    del vendor  # part of the cache key: converters differ between databases
    fields = model._meta.concrete_fields
    converters = []
    for field in fields:
        column = field.get_col(model._meta.db_table)
        converters.append((column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)))
    return [field.attname for field in fields], converters


def columns(model: type[Model], alias: str) -> str:
    """Return `alias.col, …` for every concrete column of the model, in field order (what `from_row` reads)."""
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


def from_row(model: type[M], row: Sequence[Any]) -> M:
    """Build a model instance from the first `width(model)` values of a row selected with `columns(model, …)`."""
    names, converters = _layout(model, connection.vendor)
    values = []
    for value, (column, functions) in zip(row, converters, strict=False):
        for function in functions:
            value = function(value, column, connection)
        values.append(value)
    return model.from_db(connection.alias, names, values)


@contextmanager
def cursor() -> Iterator[Any]:
    """A cursor for this module's fixed statements: on PostgreSQL it binds parameters on the server.

    Such a cursor lets the connection prepare a statement it has run a couple of times, so the database parses
    and plans each hot statement once per connection instead of on every request. Errors come out as Django's
    (IntegrityError and friends), as from `connection.cursor()`.
    """
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        with connection.cursor() as plain:
            yield plain
        return
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    # Wrapped as `connection.cursor()` wraps its own: errors translated, queries logged when logging is on.
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    with wrap(ServerBindingCursor(connection.connection)) as bound:
        yield bound


def fetch_one(sql: str, params: Sequence[Any] | dict[str, Any]) -> tuple[Any, ...] | None:
    with cursor() as bound:
        bound.execute(sql, params)
        return bound.fetchone()


def insert(instance: Model) -> None:
    """INSERT one new instance (every concrete column, as `save(force_insert=True)` writes them) and set its pk."""
    model = type(instance)
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    names = ", ".join(f'"{field.column}"' for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {model._meta.db_table} ({names}) VALUES ({marks})"
    returning = connection.features.can_return_columns_from_insert
    with cursor() as bound:
        bound.execute(f'{sql} RETURNING "{model._meta.pk.column}"' if returning else sql, values)
        instance.pk = bound.fetchone()[0] if returning else bound.lastrowid
    instance._state.adding = False
    instance._state.db = connection.alias
