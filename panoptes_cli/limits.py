"""Bounds on what the parsers accept: nesting depth, size and YAML alias expansion.

Input is hostile until parsed: a JSON line of a hundred thousand ``[``, a
config file whose aliases expand to a billion strings, a key of thousands of
dotted names. Each parser of panoptes-cli (config files and values, request
bodies, ``db insert`` and ``serial listen`` lines) checks what it reads
against these limits and refuses it with :class:`LimitExceeded` (a
``ValueError``), naming the limit, instead of recursing until Python gives up.

>>> loads('{"wind": {"speed": 3}}')
{'wind': {'speed': 3}}
>>> loads('[' * 101 + ']' * 101)
Traceback (most recent call last):
  ...
panoptes_cli.limits.LimitExceeded: nested deeper than 100 levels
"""

import json
import re

# Deepest nesting of mappings and lists any input may have. Real configs and
# records use fewer than ten levels; the serializers and YAML writers recurse,
# and Python's stack allows a few hundred levels of them.
MAX_DEPTH = 100
# Most values (scalars, mappings, list items, expanded aliases counted each
# time they are used) a YAML document may hold. A unit's config has a few hundred.
MAX_YAML_VALUES = 100_000
# Largest config file read, and the longest dotted key.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_KEY_LENGTH = 1024


class LimitExceeded(ValueError):
    """Input beyond one of the limits; ``line`` is its (1-based) line when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def _too_deep(limit: int) -> LimitExceeded:
    return LimitExceeded(f'nested deeper than {limit} levels')


def check_depth(obj, limit: int = MAX_DEPTH) -> None:
    """Raise LimitExceeded if ``obj`` nests mappings and lists deeper than ``limit`` levels.

    A scalar is level 0, ``[1]`` level 1. The walk is iterative, so a value
    too deep for the recursive serializers is measured without recursing.

    >>> check_depth({'a': [{'b': 1}]}, limit=3)
    >>> check_depth({'a': [{'b': [1]}]}, limit=3)
    Traceback (most recent call last):
      ...
    panoptes_cli.limits.LimitExceeded: nested deeper than 3 levels
    """
    if not isinstance(obj, (dict, list, tuple)):
        return
    if limit < 1:
        raise _too_deep(limit)
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list, tuple)):
                if depth >= limit:
                    raise _too_deep(limit)
                stack.append((child, depth + 1))


def loads(text, limit: int = MAX_DEPTH, **kwargs):
    """Decode JSON as ``json.loads`` does, refusing values nested deeper than ``limit``.

    Raises:
        json.JSONDecodeError: If the text is not JSON.
        LimitExceeded: If it nests too deep (both are ValueErrors).
    """
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise _too_deep(limit) from None
    # Depth needs an opening bracket per level: text with fewer cannot be too deep.
    if isinstance(text, (bytes, bytearray)):
        openers = text.count(b'[') + text.count(b'{')
    else:
        openers = text.count('[') + text.count('{')
    if openers > limit:
        check_depth(value, limit)
    return value


def check_yaml_document(data, limit: int = MAX_DEPTH, max_values: int = MAX_YAML_VALUES) -> None:
    """Raise LimitExceeded if a loaded YAML document nests too deep or its aliases expand too far.

    An alias makes a mapping or list appear once more wherever it is used, so
    ten lines of nested aliases name a billion values ("billion laughs"):
    harmless while loaded, since each alias is the same object, but every walk
    of the data (parsing values, saving, sending as JSON) visits them all.
    Each distinct mapping or list is measured once, so the check costs one
    pass over the document as written. The error's ``line`` is where the
    offending mapping or list starts.

    >>> from ruamel.yaml import YAML
    >>> laughs = 'a: &a [x, x, x, x, x, x, x, x, x, x]\\n' + ''.join(
    ...     f'{n}: &{n} [{", ".join([f"*{p}"] * 10)}]\\n' for p, n in zip('abcd', 'bcde'))
    >>> check_yaml_document(YAML().load(laughs), max_values=10_000)
    Traceback (most recent call last):
      ...
    panoptes_cli.limits.LimitExceeded: aliases expand to more than 10000 values
    """
    # Post-order walk: a node's size (values it holds, expanded) and height
    # are known once all its children's are.
    if not isinstance(data, (dict, list, tuple)):
        return
    measured = {}
    stack = [(data, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in measured:
            continue
        children = list(node.values() if isinstance(node, dict) else node)
        containers = [child for child in children if isinstance(child, (dict, list, tuple))]
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in containers if id(child) not in measured)
            if len(stack) > max_values:
                raise LimitExceeded(f'more than {max_values} values', _line_of(node))
            continue
        size, height = len(children), 1
        for child in containers:
            child_size, child_height = measured[id(child)]
            size += child_size
            height = max(height, child_height + 1)
        if height > limit:
            raise LimitExceeded(f'nested deeper than {limit} levels', _line_of(node))
        if size > max_values:
            raise LimitExceeded(f'aliases expand to more than {max_values} values',
                                _line_of(node))
        measured[id(node)] = (size, height)


_BRACKETS = re.compile(r'[\[\]{}]')


def check_flow_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Raise LimitExceeded (with its line) if YAML text opens more than ``limit`` brackets at once.

    ruamel's scanner slows down with the square of the nesting of ``[`` and
    ``{`` (ten seconds for five thousand), so nesting is measured before
    parsing, from the brackets alone. Brackets inside quoted strings count
    too: a config quoting a hundred unclosed brackets is not a real one.

    >>> check_flow_depth('a: [[1], {b: [2]}]', limit=3)
    >>> check_flow_depth('a: 1\\nb: [[[[1]]]]', limit=3)
    Traceback (most recent call last):
      ...
    panoptes_cli.limits.LimitExceeded: nested deeper than 3 levels
    """
    if text.count('[') + text.count('{') <= limit:
        return
    depth = 0
    for match in _BRACKETS.finditer(text):
        if match[0] in '[{':
            depth += 1
            if depth > limit:
                raise LimitExceeded(f'nested deeper than {limit} levels',
                                    text.count('\n', 0, match.start()) + 1)
        elif depth:
            depth -= 1


def _line_of(node) -> int | None:
    """The 1-based line a ruamel mapping or list starts on, if it knows it."""
    line = getattr(getattr(node, 'lc', None), 'line', None)
    return None if line is None else line + 1


def check_key(key: str, limit: int = MAX_DEPTH) -> int:
    """Raise LimitExceeded for a dotted key too long or with too many parts; return its depth.

    The depth is the number of names and list indexes in it.

    >>> check_key('cameras.devices[1].model')
    4
    >>> check_key('a.' * 200 + 'b')
    Traceback (most recent call last):
      ...
    panoptes_cli.limits.LimitExceeded: key of 201 parts: at most 100 names and [N] indexes
    """
    if len(key) > MAX_KEY_LENGTH:
        raise LimitExceeded(f'key of {len(key)} characters: at most {MAX_KEY_LENGTH}')
    depth = key.count('.') + key.count('[') + 1
    if depth > limit:
        raise LimitExceeded(f'key of {depth} parts: at most {limit} names and [N] indexes')
    return depth
