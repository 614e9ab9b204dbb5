"""JSON and YAML conversion that understands astropy Quantities and times.

Writing: Quantities become ``"42.0 m"``, datetimes and astropy Times become
ISO-8601 strings, numpy scalars and arrays become numbers and lists, sets
become lists and exceptions their message. Reading: ``{"value": .., "unit": ..}``
dicts and strings like ``"42.0 deg"`` become Quantities, and ISO-8601 date-time
strings (and only those) become ``datetime.datetime``. YAML keeps comments and
key order, and never constructs arbitrary Python objects.

astropy, numpy and ruamel.yaml are imported only when a value or a call needs
them, so plain data converts at the speed of the json module and commands that
only print JSON start fast.

>>> from panoptes_cli.serializers import StringYAML
>>> StringYAML().dump({'answer': 42})
'answer: 42\\n'
"""

import copy
import json
import re
from datetime import date as _date, datetime as _datetime, timezone

from panoptes_cli.error import InvalidDeserialization, InvalidSerialization
from panoptes_cli.limits import (
    MAX_DEPTH, LimitExceeded, check_flow_depth, check_yaml_document, loads)

# ISO-8601 date and time, with optional seconds, fraction and UTC offset.
_ISO_DATETIME = re.compile(
    r'^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$')
# A number, white space, then something shaped like a unit (deg, m, km / s, m2, ...).
_QUANTITY_STRING = re.compile(
    r'^\s*(?P<number>[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)\s+'
    r'(?P<unit>[A-Za-z][A-Za-z0-9_]*(\s*[/*.]?\s*[A-Za-z][A-Za-z0-9_]*)*(\(?-?\d+\)?)?)\s*$')
# Single letters that read as a unit without doubt; others (C for coulomb when
# Celsius was meant, G, T, F, ...) are left as strings.
_SINGLE_LETTER_UNITS = frozenset('msgdhKVAW')


def __getattr__(name):
    # PEP 562: `from panoptes_cli.serializers import StringYAML` loads ruamel.yaml only then.
    if name == 'StringYAML':
        from panoptes_cli.yaml_text import StringYAML

        return StringYAML
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def _is_quantity(obj) -> bool:
    return type(obj).__module__.startswith('astropy.units') and hasattr(obj, 'unit')


def _is_astropy_time(obj) -> bool:
    return type(obj).__module__.startswith('astropy.time') and hasattr(obj, 'isot')


def _iso(value: _datetime) -> str:
    """Format a datetime as UTC ISO-8601 with milliseconds, as astropy's ``isot`` does."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec='milliseconds')


def serialize_object(obj):
    """Serialize one object to something JSON and YAML can write; others are returned as is.

    >>> from datetime import datetime
    >>> from astropy import units as u
    >>> serialize_object(42 * u.meter)
    '42.0 m'
    >>> serialize_object(datetime(1999, 12, 31, 11, 59, 59))
    '1999-12-31T11:59:59.000'
    >>> import numpy as np
    >>> serialize_object(np.arange(3)), serialize_object(np.float32(1.5))
    ([0, 1, 2], 1.5)
    >>> serialize_object({3, 1, 2}), serialize_object(ValueError('bad value'))
    ([1, 2, 3], 'ValueError: bad value')
    """
    if _is_quantity(obj):
        return str(obj)
    if _is_astropy_time(obj):
        return obj.isot
    if isinstance(obj, _datetime):
        return _iso(obj)
    if isinstance(obj, _date):
        return obj.isoformat()
    if type(obj).__module__ == 'numpy' and hasattr(obj, 'tolist'):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    if isinstance(obj, BaseException):
        return f'{type(obj).__name__}: {obj}' if str(obj) else type(obj).__name__
    if hasattr(obj, '__fspath__'):
        return str(obj)
    return obj


def serialize_all_objects(obj):
    """Return a copy of ``obj`` with every value serialized, walking dicts and lists.

    YAML comments on ruamel's commented maps and sequences are kept.

    >>> from astropy import units as u
    >>> serialize_all_objects({'horizon': 30 * u.deg, 'limits': [1 * u.s, {'max': 2 * u.m}]})
    {'horizon': '30.0 deg', 'limits': ['1.0 s', {'max': '2.0 m'}]}
    """
    if isinstance(obj, dict):
        serialized = copy.copy(obj)
        for key, value in obj.items():
            serialized[key] = serialize_all_objects(value)
        return serialized
    if isinstance(obj, (list, tuple)):
        items = [serialize_all_objects(value) for value in obj]
        if hasattr(obj, 'copy_attributes'):
            serialized = type(obj)(items)
            obj.copy_attributes(serialized)
            return serialized
        return items
    value = serialize_object(obj)
    if value is not obj and isinstance(value, (list, dict)):
        return serialize_all_objects(value)
    return value


def _parse_quantity_string(text: str):
    """Return the Quantity a string like ``"42.0 deg"`` names, or None if it names none."""
    match = _QUANTITY_STRING.match(text)
    if match is None:
        return None
    unit_text = match['unit'].strip()
    if len(unit_text) == 1 and unit_text not in _SINGLE_LETTER_UNITS:
        return None
    from astropy import units as u

    try:
        unit = u.Unit(unit_text, parse_strict='raise')
        return float(match['number']) * unit
    except (ValueError, TypeError):
        return None


def _parse_value_unit_dict(obj: dict):
    """Return the Quantity a ``{"value": .., "unit": ..}`` dict names, or None."""
    from astropy import units as u

    try:
        return u.Quantity(obj['value'], u.Unit(obj['unit'], parse_strict='raise'))
    except (ValueError, TypeError):
        return None


def _deserialize_string(text: str):
    if _ISO_DATETIME.match(text):
        try:
            parsed = _datetime.fromisoformat(text)
        except ValueError:
            return text
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        return parsed
    if text and (text[0].isdigit() or text[0] in '+-.') and not text[-1].isdigit():
        quantity = _parse_quantity_string(text)
        if quantity is not None:
            return quantity
    return text


def deserialize_all_objects(obj):
    """Recursively turn unit dicts and strings into Quantities, ISO strings into datetimes.

    Dicts (including ruamel's commented maps) and lists are changed in place,
    so YAML comments survive; the result is also returned.

    >>> deserialize_all_objects({'horizon': '30 deg', 'when': '1999-12-31T23:59:59',
    ...                          'day': '30', 'month': 'may', 'name': 'Mauna Loa'})
    {'horizon': <Quantity 30. deg>, 'when': datetime.datetime(1999, 12, 31, 23, 59, 59), 'day': '30', 'month': 'may', 'name': 'Mauna Loa'}
    >>> deserialize_all_objects([{'value': 42.0, 'unit': 'm'}, '12.5 C'])
    [<Quantity 42. m>, '12.5 C']
    """
    if isinstance(obj, dict):
        if len(obj) == 2 and 'value' in obj and 'unit' in obj:
            quantity = _parse_value_unit_dict(obj)
            if quantity is not None:
                return quantity
        for key, value in obj.items():
            obj[key] = deserialize_all_objects(value)
        return obj
    if isinstance(obj, list):
        for index, value in enumerate(obj):
            obj[index] = deserialize_all_objects(value)
        return obj
    if isinstance(obj, str):
        return _deserialize_string(obj)
    return obj


def _find_unserializable(obj, path='') -> str:
    """Return the dotted path of the first value JSON cannot write, for error messages."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f'{path}{key!r} (key)'
            found = _find_unserializable(value, f'{path}{key}.')
            if found:
                return found
        return ''
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found = _find_unserializable(value, f'{path}[{index}].')
            if found:
                return found
        return ''
    try:
        json.dumps(obj, default=_json_default)
    except (TypeError, ValueError):
        return path.rstrip('.') or '<top level>'
    return ''


def _json_default(obj):
    value = serialize_object(obj)
    if value is obj:
        raise TypeError(f'Object of type {type(obj).__name__} is not JSON serializable')
    return value


def to_json(obj, filename=None, append=True, **kwargs) -> str:
    """Convert a Python object to a JSON string, optionally also writing it to a file.

    >>> from astropy import units as u
    >>> import numpy as np
    >>> to_json({'name': 'Mauna Loa', 'elevation': 3397 * u.meter})
    '{"name": "Mauna Loa", "elevation": "3397.0 m"}'
    >>> to_json({'numpy_array': np.arange(10)})
    '{"numpy_array": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}'
    >>> to_json({'bad': object()})
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidSerialization: InvalidSerialization: cannot serialize 'bad' to JSON: Object of type object is not JSON serializable

    Args:
        obj (object): The object to convert, usually a dict.
        filename (str, optional): A file to write the JSON to as well, as one line.
        append (bool, optional): Append to ``filename`` (default) instead of replacing it.
        **kwargs: Passed to ``json.dumps``.

    Returns:
        str: The JSON string.
    """
    try:
        text = json.dumps(obj, default=_json_default, **kwargs)
    except RecursionError:
        raise InvalidSerialization('cannot serialize to JSON: nested too deeply') from None
    except (TypeError, ValueError) as err:
        where = _find_unserializable(obj) or '<top level>'
        raise InvalidSerialization(f'cannot serialize {where!r} to JSON: {err}') from err
    if filename is not None:
        with open(filename, 'a' if append else 'w') as handle:
            handle.write(text + '\n')
    return text


def from_json(msg: str):
    """Convert a JSON string into a Python object, parsing Quantities and ISO times.

    >>> config_str = '{"name":"Mauna Loa","elevation":{"value":3397.0,"unit":"m"}}'
    >>> from_json(config_str)
    {'name': 'Mauna Loa', 'elevation': <Quantity 3397. m>}
    >>> from_json('{"horizon":{"value":42.0,"unit":"degr"}}')
    {'horizon': {'value': 42.0, 'unit': 'degr'}}
    >>> from_json('{"horizon": "42.0 deg"}')
    {'horizon': <Quantity 42. deg>}
    >>> from_json('{"elevation": "1000 m"}')
    {'elevation': <Quantity 1000. m>}
    >>> from_json('{"readout_time": "10 s"}')
    {'readout_time': <Quantity 10. s>}
    >>> horizon = from_json('{"horizon":{"value":42.0,"unit":"d"}}')
    >>> horizon['horizon']
    <Quantity 42. d>
    >>> horizon['horizon'].decompose()
    <Quantity 3628800. s>
    >>> from datetime import datetime
    >>> time_str = to_json({'current_time': datetime(2019, 4, 8, 6, 43, 28, 232406)})
    >>> from_json(time_str)['current_time']
    datetime.datetime(2019, 4, 8, 6, 43, 28, 232000)
    >>> from astropy.time import Time
    >>> Time(from_json(time_str)['current_time'])
    <Time object: scale='utc' format='datetime' value=2019-04-08 06:43:28.232000>
    >>> from_json('{"broken": ')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidDeserialization: InvalidDeserialization: invalid JSON: Expecting value: line 1 column 12 (char 11)
    """
    try:
        loaded = loads(msg)
    except (TypeError, ValueError) as err:
        raise InvalidDeserialization(f'invalid JSON: {err}') from err
    return deserialize_all_objects(loaded)


# Text YAML would read as more than a plain scalar: a comment, an anchor, an
# alias, a tag, a block scalar or sequence, a directive, a mapping ("a: b").
_NOT_PLAIN = re.compile(r'^[#&*!|>%@`]|^[-?:](\s|$)|:(\s|$)|\s#')


def _reject_json_constant(name: str):
    raise ValueError(f'{name} is not a JSON number')


def parse_typed_value(text: str, containers: bool = False):
    """Read a value a user typed (a command-line argument, a query) as a YAML value.

    This is the one reader of typed values: ``config set``, ``config get
    --default``, ``db find --where`` and ``fits header --ext`` all use it.
    Numbers, ``true``/``false`` and ``null``/``~`` become what YAML makes of
    them; quotes keep a string a string. Anything else stays the text typed,
    as do dates (records and configs hold them as text) and text YAML would
    read as a comment, a mapping or a reference (``note=#3`` is ``'#3'``).
    With ``containers``, text that starts with ``[`` or ``{`` is a list or a
    mapping.

    >>> [parse_typed_value(v) for v in ('12.5', '3', '.5', 'true', 'False', 'null', '~', '')]
    [12.5, 3, 0.5, True, False, None, None, None]
    >>> [parse_typed_value(v) for v in ('dry', '"12.5"', '37 deg', '2024-05-01', '#3', 'a: b')]
    ['dry', '12.5', '37 deg', '2024-05-01', '#3', 'a: b']
    >>> parse_typed_value('[1, 2]'), parse_typed_value('[1, 2]', containers=True)
    ('[1, 2]', [1, 2])
    >>> parse_typed_value('.5', containers=True), parse_typed_value('dry', containers=True)
    (0.5, 'dry')
    >>> parse_typed_value('{site: MLO, elevation: 3397}', containers=True)
    {'site': 'MLO', 'elevation': 3397}

    Raises:
        panoptes_cli.limits.LimitExceeded: For a value nested deeper than 100
            levels or whose YAML aliases expand too far (a ``ValueError``).
    """
    stripped = text.strip()
    try:
        # JSON's scalars mean the same in YAML and need no YAML parser: the fast path.
        value = loads(stripped, parse_constant=_reject_json_constant)
    except ValueError:
        pass
    else:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
    is_container = stripped.startswith(('[', '{'))
    if (is_container and not containers) or (not is_container and _NOT_PLAIN.search(stripped)):
        return text
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        # Bounded before it is parsed, and after: aliases would expand when sent as JSON.
        check_flow_depth(stripped)
        value = YAML(typ='safe', pure=True).load(stripped)
        check_yaml_document(value)
    except RecursionError:
        raise LimitExceeded(f'nested deeper than {MAX_DEPTH} levels') from None
    except YAMLError:
        return text
    if isinstance(value, (_date, list, dict)) and not is_container:
        return text
    return value


def _round_trip_yaml():
    from panoptes_cli.yaml_text import StringYAML

    yaml = StringYAML(typ='rt')
    yaml.preserve_quotes = False
    return yaml


def from_yaml(msg, parse=True):
    """Convert a YAML string (or stream) into a Python object, keeping comments.

    The round-trip loader builds only plain data: tags that would construct
    Python objects are never executed.

    >>> config_str = '''name: Testing PANOPTES Unit
    ... pan_id: PAN000
    ...
    ... location:
    ...     latitude: 19.54 deg
    ...     longitude: -155.58 deg
    ...     name: Mauna Loa Observatory # Can be anything
    ... '''
    >>> config = from_yaml(config_str)
    >>> config['location']['latitude']
    <Quantity 19.54 deg>
    >>> yaml_config = to_yaml(config)
    >>> print(yaml_config)
    name: Testing PANOPTES Unit
    pan_id: PAN000
    <BLANKLINE>
    location:
      latitude: 19.54 deg
      longitude: -155.58 deg
      name: Mauna Loa Observatory # Can be anything
    <BLANKLINE>
    >>> from_yaml('a: [1, 2')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidDeserialization: InvalidDeserialization: invalid YAML: ...line 1, column 9...

    Args:
        msg (str): The YAML text (or an open stream).
        parse (bool): Parse Quantities and times, default True.

    Returns:
        ruamel.yaml.comments.CommentedMap: The loaded object, an ordered dict.
    """
    from ruamel.yaml.error import YAMLError

    if hasattr(msg, 'read'):
        msg = msg.read()
    try:
        check_flow_depth(msg)
        loaded = _round_trip_yaml().load(msg)
        check_yaml_document(loaded)
    except YAMLError as err:
        raise InvalidDeserialization(f'invalid YAML: {" ".join(str(err).split())}') from err
    except RecursionError:
        err = LimitExceeded(f'nested deeper than {MAX_DEPTH} levels', _deepest_line(msg))
        raise InvalidDeserialization(f'invalid YAML: {err}') from err
    except LimitExceeded as err:
        raise InvalidDeserialization(f'invalid YAML: {err}') from err
    return deserialize_all_objects(loaded) if parse else loaded


def _deepest_line(text, limit: int = MAX_DEPTH):
    """Return the 1-based line where YAML text first nests deeper than ``limit``, if it does.

    ruamel's parser reads events without recursing (its composer recurses), so
    this finds the line of an indented document too deep to load.
    """
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent

    depth = 0
    try:
        for event in _round_trip_yaml().parse(text):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > limit:
                    return event.start_mark.line + 1
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
    except YAMLError:
        return None
    return None


def to_yaml(obj, **kwargs) -> str:
    """Serialize a Python object to a YAML string (or to ``stream=`` when given).

    >>> import os
    >>> os.environ['POCSTIME'] = '1999-12-31 23:49:49'
    >>> from panoptes_cli.time import current_time
    >>> t0 = current_time()
    >>> t0
    <Time object: scale='utc' format='iso' value=1999-12-31 23:49:49.000>
    >>> to_yaml({'astropy time -> astropy time': t0})
    "astropy time -> astropy time: '1999-12-31T23:49:49.000'\\n"
    >>> to_yaml({'datetime -> astropy time': t0.datetime})
    "datetime -> astropy time: '1999-12-31T23:49:49.000'\\n"
    >>> del os.environ['POCSTIME']

    Args:
        obj (dict): The object to serialize.
        **kwargs: Passed to the YAML ``dump``, e.g. ``stream=``.

    Returns:
        str: The YAML text (None when written to a stream).
    """
    from ruamel.yaml.error import YAMLError

    try:
        return _round_trip_yaml().dump(serialize_all_objects(obj), **kwargs)
    except RecursionError:
        raise InvalidSerialization('cannot serialize to YAML: nested too deeply') from None
    except YAMLError as err:
        raise InvalidSerialization(f'cannot serialize to YAML: {err}') from err
