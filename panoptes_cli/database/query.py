"""Conditions on the fields of a record's data (``--where``), checked the same way by every store.

>>> conditions = parse_where(['wind.speed=3', 'safe=true'])
>>> conditions
[(['wind', 'speed'], 3), (['safe'], True)]
>>> matches({'data': {'wind': {'speed': 3}, 'safe': True}}, conditions)
True
>>> matches({'data': {'wind': {'speed': 3}, 'safe': 1}}, conditions)
False
"""

from panoptes_cli.error import IllegalValue
from panoptes_cli.serializers import parse_typed_value


def parse_scalar(text: str):
    """Read a ``--where`` value as :func:`~panoptes_cli.serializers.parse_typed_value` does.

    >>> [parse_scalar(v) for v in ('12.5', '3', 'true', 'False', 'null', '~', 'dry', '"12.5"')]
    [12.5, 3, True, False, None, None, 'dry', '12.5']
    """
    return parse_typed_value(text)


def parse_condition(text: str) -> tuple[str, object]:
    """Split a ``KEY=VALUE`` condition on a data field into the key and its parsed value.

    >>> parse_condition('wind.speed=3')
    ('wind.speed', 3)
    >>> parse_condition('temp')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: invalid condition 'temp': use KEY=VALUE, e.g. temp=12.5
    """
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
        raise IllegalValue(f'invalid condition {text!r}: use KEY=VALUE, e.g. temp=12.5')
    return key.strip(), parse_scalar(value)


def parse_where(where) -> list[tuple[list[str], object]]:
    """Turn ``where`` (a dict, or ``KEY=VALUE`` strings) into (key path, value) pairs."""
    if not where:
        return []
    if isinstance(where, str):
        where = [where]
    items = where.items() if isinstance(where, dict) else (parse_condition(w) for w in where)
    conditions = []
    for key, value in items:
        path = str(key).split('.')
        if not all(path):
            raise IllegalValue(f'invalid field {key!r}: use a name like temp or wind.speed')
        conditions.append((path, value))
    return conditions


def _equal(stored, expected) -> bool:
    # True must not match 1, nor 1 match True: JSON keeps them apart.
    if isinstance(stored, bool) or isinstance(expected, bool):
        return isinstance(stored, bool) and isinstance(expected, bool) and stored == expected
    return stored == expected


def matches(record: dict, conditions) -> bool:
    for path, expected in conditions:
        value = record.get('data')
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
        if not _equal(value, expected):
            return False
    return True
