"""Conditions on the fields of a record's data (``--where``), checked the same way by every store.

A condition is ``KEY OP VALUE`` with OP one of ``=``, ``!=``, ``>``, ``>=``,
``<``, ``<=``. The rules, which the SQL stores follow too:

- a record without the field never matches (not even ``!=``);
- ``=`` and ``!=`` compare JSON values: ``true`` is not ``1``, ``12`` is ``12.0``;
- ``>``, ``>=``, ``<``, ``<=`` compare numbers with numbers and text with text
  (by code point, so ISO dates order as times); other pairs never match.

>>> conditions = parse_where(['wind.speed>=3', 'safe=true', 'status!=ok'])
>>> conditions[0]
Condition(path=('wind', 'speed'), op='>=', value=3)
>>> matches({'data': {'wind': {'speed': 3.5}, 'safe': True, 'status': 'rain'}}, conditions)
True
>>> matches({'data': {'wind': {'speed': 3.5}, 'safe': 1, 'status': 'rain'}}, conditions)
False
>>> matches({'data': {'wind': {'speed': 3.5}, 'safe': True}}, conditions)
False
"""

import json
import operator
import re
from typing import NamedTuple

from panoptes_cli.error import IllegalValue
from panoptes_cli.serializers import parse_typed_value

# The key is everything before the first operator character.
_CONDITION = re.compile(r'^\s*([^=!<>]+?)\s*(>=|<=|!=|=|>|<)(.*)$', re.DOTALL)
_ORDERING = {'>': operator.gt, '>=': operator.ge, '<': operator.lt, '<=': operator.le}
OPERATORS = ('=', '!=', *_ORDERING)


class Condition(NamedTuple):
    """One ``--where`` test: the field's key path in ``data``, the operator, the value."""

    path: tuple[str, ...]
    op: str
    value: object


def parse_scalar(text: str):
    """Read a ``--where`` value as :func:`~panoptes_cli.serializers.parse_typed_value` does.

    >>> [parse_scalar(v) for v in ('12.5', '3', 'true', 'False', 'null', '~', 'dry', '"12.5"')]
    [12.5, 3, True, False, None, None, 'dry', '12.5']
    """
    return parse_typed_value(text)


def parse_condition(text: str) -> tuple[str, str, object]:
    """Split a ``KEY OP VALUE`` condition into its key, operator and parsed value.

    >>> parse_condition('wind.speed=3')
    ('wind.speed', '=', 3)
    >>> parse_condition('temp<=-5.5')
    ('temp', '<=', -5.5)
    >>> parse_condition('status!=ok')
    ('status', '!=', 'ok')
    >>> parse_condition('temp')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: invalid condition 'temp': use KEY=VALUE or KEY>VALUE (also !=, >=, <, <=), e.g. temp>20
    """
    found = _CONDITION.match(text)
    if not found:
        raise IllegalValue(f'invalid condition {text!r}: use KEY=VALUE or KEY>VALUE '
                           '(also !=, >=, <, <=), e.g. temp>20')
    key, op, value = found.groups()
    return key, op, parse_scalar(value)


def parse_where(where) -> list[Condition]:
    """Turn ``where`` (a dict meaning equality, or ``KEY OP VALUE`` strings) into conditions."""
    if not where:
        return []
    if isinstance(where, str):
        where = [where]
    if isinstance(where, dict):
        items = ((key, '=', value) for key, value in where.items())
    else:
        items = (parse_condition(w) for w in where)
    conditions = []
    for key, op, value in items:
        path = tuple(str(key).split('.'))
        if not all(path) or any('"' in part for part in path):
            raise IllegalValue(f'invalid field {key!r}: use a name like temp or wind.speed')
        if op in _ORDERING and (value is None or isinstance(value, bool)
                                or not isinstance(value, (int, float, str))):
            raise IllegalValue(f'invalid condition {key}{op}{value!r}: {op} compares numbers '
                               'or text, e.g. temp>20')
        conditions.append(Condition(path, op, value))
    return conditions


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(stored, expected) -> bool:
    # True must not match 1, nor 1 match True: JSON keeps them apart.
    if isinstance(stored, bool) or isinstance(expected, bool):
        return isinstance(stored, bool) and isinstance(expected, bool) and stored == expected
    return stored == expected


def _holds(stored, op: str, expected) -> bool:
    if op == '=':
        return _equal(stored, expected)
    if op == '!=':
        return not _equal(stored, expected)
    if (_is_number(stored) and _is_number(expected)) or (
            isinstance(stored, str) and isinstance(expected, str)):
        return _ORDERING[op](stored, expected)
    return False


_MISSING = object()


def field(data, path) -> object:
    """Return the value at ``path`` (a key path) in nested dicts, or ``_MISSING``."""
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def matches(record: dict, conditions) -> bool:
    """Return True if the record's data satisfies every condition."""
    for path, op, expected in conditions:
        stored = field(record.get('data'), path)
        if stored is _MISSING or not _holds(stored, op, expected):
            return False
    return True


def is_scalar(value) -> bool:
    """Return True for the values SQL stores compare themselves (JSON scalars)."""
    return value is None or isinstance(value, (bool, int, float, str))


def sqlite_condition(condition: Condition, column: str = 'record',
                     prefix: str = '$.data') -> tuple[str, list]:
    """Return the SQLite expression (and its parameters) testing ``condition`` on a JSON column.

    >>> sqlite_condition(Condition(('temp',), '>', 20))
    ("(json_type(record, ?) IN ('integer', 'real') AND json_extract(record, ?) > ?)", ['$.data."temp"', '$.data."temp"', 20])
    """
    json_path = prefix + ''.join(f'."{part}"' for part in condition.path)
    kind = f'json_type({column}, ?)'
    value = f'json_extract({column}, ?)'
    op, expected = condition.op, condition.value
    if isinstance(expected, bool) or expected is None:
        name = 'null' if expected is None else ('true' if expected else 'false')
        test, params = f"{kind} = '{name}'", [json_path]
    elif _is_number(expected):
        sql_op = '=' if op == '!=' else op
        test = f"({kind} IN ('integer', 'real') AND {value} {sql_op} ?)"
        params = [json_path, json_path, expected]
    else:
        sql_op = '=' if op == '!=' else op
        test = f"({kind} = 'text' AND {value} {sql_op} ?)"
        params = [json_path, json_path, expected]
    if op == '!=':
        return f'({kind} IS NOT NULL AND NOT {test})', [json_path, *params]
    return test, params


def postgres_condition(condition: Condition, column: str = 'data') -> tuple[str, list]:
    """Return the PostgreSQL expression (and parameters) testing ``condition`` on a JSONB column.

    >>> postgres_condition(Condition(('wind', 'speed'), '<=', 3))
    ("COALESCE(jsonb_typeof(data #> %s) = 'number' AND (data #> %s) <= %s::jsonb, false)", [['wind', 'speed'], ['wind', 'speed'], '3'])
    """
    path = list(condition.path)
    op, expected = condition.op, condition.value
    if op in ('=', '!='):
        # jsonb equality: numbers by value, true is not 1, 'null' only matches null.
        sql = f'COALESCE(({column} #> %s) {"=" if op == "=" else "<>"} %s::jsonb, false)'
        return sql, [path, json.dumps(expected)]
    if _is_number(expected):
        # Between two jsonb numbers, jsonb ordering is numeric ordering.
        sql = (f"COALESCE(jsonb_typeof({column} #> %s) = 'number' AND ({column} #> %s) {op} "
               '%s::jsonb, false)')
        return sql, [path, path, json.dumps(expected)]
    # Text by code point, as Python and SQLite compare it, whatever the database's collation.
    sql = (f"COALESCE(jsonb_typeof({column} #> %s) = 'string' AND ({column} #>> %s) COLLATE \"C\" "
           f'{op} %s, false)')
    return sql, [path, path, expected]


def parse_fields(text: str) -> list[tuple[str, ...]]:
    """Read ``--fields a,b.c`` as key paths into the data.

    >>> parse_fields('temp, wind.speed')
    [('temp',), ('wind', 'speed')]
    """
    paths = [tuple(name.strip().split('.')) for name in text.split(',') if name.strip()]
    if not paths or not all(all(path) for path in paths):
        raise IllegalValue(f'invalid fields {text!r}: use names separated by commas, '
                           'e.g. temp,wind.speed')
    return paths


def project(record: dict, paths) -> dict:
    """Return ``record`` with only the fields at ``paths`` left in its data (all when None).

    >>> record = {'_id': 'a', 'type': 'weather', 'date': '2024-05-01T00:00:00.000',
    ...           'data': {'temp': 12.5, 'wind': {'speed': 3, 'dir': 90}, 'rain': False}}
    >>> project(record, [('temp',), ('wind', 'speed'), ('snow',)])['data']
    {'temp': 12.5, 'wind': {'speed': 3}}
    """
    if paths is None or not isinstance(record.get('data'), dict):
        return record
    kept = {}
    for path in paths:
        value = field(record['data'], path)
        if value is _MISSING:
            continue
        place = kept
        for part in path[:-1]:
            place = place.setdefault(part, {})
        place[path[-1]] = value
    return {**record, 'data': kept}


def sql_filters(since, until, conditions, to_sql, mark: str) -> tuple[str, list, list]:
    """Return the SQL ``AND ...`` clauses for a query's bounds and conditions.

    Args:
        since, until: Date bounds (record date strings), or None.
        conditions: The conditions; those on a dict or list value stay for Python.
        to_sql: :func:`sqlite_condition` or :func:`postgres_condition`.
        mark (str): The driver's parameter mark (``?`` or ``%s``).

    Returns:
        (SQL text, its parameters, the conditions left for :func:`limited`).
    """
    sql, params = '', []
    for bound, op in ((since, '>='), (until, '<')):
        if bound is not None:
            sql += f' AND date {op} {mark}'
            params.append(bound)
    for condition in conditions:
        if is_scalar(condition.value):
            test, values = to_sql(condition)
            sql += f' AND {test}'
            params.extend(values)
    return sql, params, [c for c in conditions if not is_scalar(c.value)]


def limited(records, conditions, limit: int | None):
    """Yield the records meeting ``conditions``, at most ``limit`` of them (all when None)."""
    if limit == 0:
        return
    found = 0
    for record in records:
        if conditions and not matches(record, conditions):
            continue
        yield record
        found += 1
        if found == limit:
            return
