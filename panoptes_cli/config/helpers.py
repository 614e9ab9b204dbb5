"""Config files: load (with ``<stem>_local.yaml`` overrides), save, and dotted keys.

A unit's configuration is a YAML file of nested settings. Beside ``pocs.yaml``
an optional ``pocs_local.yaml`` holds the unit's own changes: loading deep-merges
it over the defaults, so a local ``location: {horizon: 45 deg}`` changes only
the horizon. The config server saves the values it is given to that local file,
so the defaults can always be recovered.

Keys are dotted paths with list indexes, as in ``cameras.devices[1].model``.

>>> config = load_config(default_config_file(), load_local=False)
>>> lookup(config, 'location.horizon')
<Quantity 30. deg>
>>> lookup(config, 'cameras.devices[1].model')
'canon_gphoto2'
"""

import errno
import os
import re
import stat
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, TaggedScalar
from ruamel.yaml.scalarbool import ScalarBoolean
from scalpl import Cut

from panoptes_cli.error import InvalidConfig, InvalidDeserialization
from panoptes_cli.files import atomic_write
from panoptes_cli.limits import MAX_CONFIG_BYTES, LimitExceeded, check_key
from panoptes_cli.serializers import from_yaml, serialize_all_objects, to_yaml

# The unit config shipped inside the package: what `panoptes config run` serves
# when no file is named.
BUNDLED_CONFIG = Path(__file__).resolve().parent.parent / 'data' / 'default_config.yaml'

# A dotted key: names (anything but . [ ]), each with any number of [index] suffixes.
_KEY = re.compile(r'[^.\[\]]+(?:\[-?\d+\])*(?:\.[^.\[\]]+(?:\[-?\d+\])*)*')
_NAME = re.compile(r'[^.\[\]]+')
_INDEX = re.compile(r'\[(-?\d+)\]')


def default_config_file() -> str:
    """Return the config file to use when none is named: ``$PANOPTES_CONFIG_FILE``, else the bundled one.

    >>> BUNDLED_CONFIG.name
    'default_config.yaml'
    """
    return os.environ.get('PANOPTES_CONFIG_FILE') or str(BUNDLED_CONFIG)


def is_bundled_config(path) -> bool:
    """Return True if ``path`` is the default config shipped inside the package."""
    try:
        return Path(path).resolve() == BUNDLED_CONFIG
    except (OSError, TypeError):
        return False


def local_config_path(path) -> Path:
    """Return the local override file that belongs beside a config file.

    The name comes from the file's stem (the manual replaced every dot in the
    whole path, which broke on directories with dots in their names); a file
    that already is a local file is its own local file.

    >>> str(local_config_path('/etc/panoptes.d/pocs.yaml'))
    '/etc/panoptes.d/pocs_local.yaml'
    >>> str(local_config_path('/etc/panoptes.d/pocs_local.yaml'))
    '/etc/panoptes.d/pocs_local.yaml'
    """
    path = Path(path)
    if path.stem.endswith('_local'):
        return path
    return path.with_name(f'{path.stem}_local{path.suffix or ".yaml"}')


def _read_config_file(path: Path, parse: bool):
    """Load one YAML config file; every failure is an InvalidConfig naming the file (and line)."""
    try:
        # Stat first: reading a FIFO or a device would block or never end.
        info = path.stat()
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            raise InvalidConfig(f'{path}: not a regular file (a pipe or a device); '
                                'a config file is a YAML file on disk')
        if info.st_size > MAX_CONFIG_BYTES:
            raise InvalidConfig(f'{path}: {info.st_size} bytes, larger than the '
                                f'{MAX_CONFIG_BYTES} bytes a config file may have')
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise InvalidConfig(f'{path}: no such config file') from None
    except UnicodeDecodeError:
        raise InvalidConfig(f'{path}: not a YAML text file (it is not UTF-8)') from None
    except OSError as err:
        raise InvalidConfig(f'{path}: cannot read: {err.strerror}') from None
    return parse_config_text(text, str(path), parse)


def parse_config_text(text: str, where: str = '<string>', parse: bool = True):
    """Load config settings from YAML text; ``where`` names it in errors. None if it is empty.

    >>> parse_config_text('location:\\n  horizon: 30 deg\\n')['location']['horizon']
    <Quantity 30. deg>
    >>> parse_config_text('location:\\n  horizon: [30 deg\\n', 'pocs.yaml')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidConfig: InvalidConfig: pocs.yaml: invalid YAML at line 3, column 1: expected ',' or ']', but got '<stream end>'
    """
    try:
        config = from_yaml(text, parse=parse)
    except InvalidDeserialization as err:
        raise InvalidConfig(f'{where}: {_describe_yaml_error(err.__cause__)}') from None
    if config is None:
        return None
    if not isinstance(config, dict):
        raise InvalidConfig(f'{where}: the top level must be a mapping of settings, '
                            f'not a {type(config).__name__}')
    return config


def _describe_yaml_error(err) -> str:
    """Return ``invalid YAML at line L, column C: <problem>`` for a ruamel error or a limit."""
    if isinstance(err, LimitExceeded):
        where = f' at line {err.line}' if err.line else ''
        return f'YAML{where} refused: {err}; write the values out instead of nesting them or using aliases'
    mark = getattr(err, 'problem_mark', None) or getattr(err, 'context_mark', None)
    problem = getattr(err, 'problem', None) or getattr(err, 'context', None) or str(err)
    problem = ' '.join(str(problem).split())
    if mark is None:
        return f'invalid YAML: {problem}'
    return f'invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}'


def deep_merge(base: dict, override: dict) -> dict:
    """Merge ``override`` into ``base`` in place: nested mappings merge, anything else replaces.

    Comments attached to ``base`` stay where they are.

    >>> deep_merge({'location': {'horizon': 30, 'name': 'Mauna Loa'}, 'devices': [1, 2]},
    ...            {'location': {'horizon': 45}, 'devices': [3]})
    {'location': {'horizon': 45, 'name': 'Mauna Loa'}, 'devices': [3]}
    """
    for key, value in override.items():
        current = base.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            deep_merge(current, value)
        else:
            base[key] = value
    return base


def load_config(config_files=None, parse: bool = True, load_local: bool = True,
                strict: bool = False) -> dict:
    """Load configuration information.

    ``config_files`` (a path or a list of paths) are loaded in order, each
    later file deep-merged over the earlier ones. With ``load_local``, a
    ``<stem>_local.yaml`` beside a file is merged over it right after it, so
    ``pocs_local.yaml`` can change only ``location.horizon`` and keep the
    rest of ``location`` (the manual replaced whole top-level entries).

    With no files, ``$PANOPTES_CONFIG_FILE`` is loaded, else the default unit
    config bundled with the package (the manual's ``$PANDIR/conf_files/pocs.yaml``
    default is reached by setting ``PANOPTES_CONFIG_FILE``).

    A file that is missing or not valid YAML is skipped with a warning through the
    logger, as panoptes-utils 0.2.29 did (its ``_local`` file is still merged if it
    is there). With ``strict=True`` (the config server and ``panoptes config get
    --file`` use it) such a file raises :class:`~panoptes_cli.error.InvalidConfig`
    naming the file and line instead, so a server never starts on half a config.

    >>> config = load_config(default_config_file(), load_local=False)
    >>> config['name'], config['location']['horizon']
    ('Testing PANOPTES Unit', <Quantity 30. deg>)
    >>> load_config(default_config_file(), parse=False, load_local=False)['location']['horizon']
    '30 deg'
    >>> load_config('/nonexistent/pocs.yaml')
    {}
    >>> load_config('/nonexistent/pocs.yaml', strict=True)
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidConfig: InvalidConfig: /nonexistent/pocs.yaml: no such config file

    Args:
        config_files (str or list, optional): The files to load, in order.
        parse (bool, optional): Turn values such as ``30 deg`` and ISO dates into
            Quantities and datetimes, default True.
        load_local (bool, optional): Merge each file's ``<stem>_local.yaml``, default True.
        strict (bool, optional): Raise on a missing or invalid file instead of
            skipping it with a warning, default False.

    Returns:
        dict: The merged config, a ruamel ``CommentedMap`` that keeps the first file's comments.
    """
    if config_files is None or config_files == []:
        config_files = [default_config_file()]
    elif isinstance(config_files, (str, os.PathLike)):
        config_files = [config_files]

    def read(path: Path, main: bool):
        try:
            layer = _read_config_file(path, parse)
            if layer is None and main:
                raise InvalidConfig(f'{path}: the file holds no settings')
            return layer
        except InvalidConfig as err:
            if strict:
                raise
            from panoptes_cli.logging import logger

            logger.warning(f'load_config skips {err.msg}')
            return None

    config = None
    for name in config_files:
        path = Path(name).expanduser()
        layers = [read(path, main=True)]
        local_path = local_config_path(path)
        if load_local and local_path != path and local_path.exists():
            layers.append(read(local_path, main=False))
        for layer in layers:
            if layer is None:
                continue
            if config is None:
                config = layer
            else:
                deep_merge(config, layer)
    return config if config is not None else CommentedMap()


def save_config(path, config: dict, overwrite: bool = True) -> bool:
    """Save config to the local yaml file that belongs beside ``path``.

    ``path`` is the config file (``pocs.yaml``); the config goes to its
    ``<stem>_local.yaml`` (``pocs_local.yaml``), so the defaults stay intact.
    Missing parent directories are created.
    The write is atomic (temporary file, fsync, rename): a crash leaves the old
    file or the new one, never half of one. Comments are kept when ``config``
    came from :func:`load_config`.

    >>> import tempfile, pathlib
    >>> directory = pathlib.Path(tempfile.mkdtemp())
    >>> config = load_config(default_config_file(), load_local=False)
    >>> config['location']['horizon'] = '45 deg'
    >>> save_config(directory / 'pocs.yaml', config)
    True
    >>> save_config(directory / 'new' / 'pocs.yaml', config)
    True
    >>> load_config(directory / 'pocs_local.yaml')['location']['horizon']
    <Quantity 45. deg>
    >>> save_config(directory / 'pocs.yaml', config, overwrite=False)
    Traceback (most recent call last):
      ...
    FileExistsError: [Errno 17] local config exists and overwrite=False: '.../pocs_local.yaml'

    Args:
        path (str): The config file whose local file to write, relative or absolute.
        config (dict): The config to save.
        overwrite (bool, optional): Replace an existing local file, default True.

    Returns:
        bool: True once the file is on disk.

    Raises:
        FileExistsError: If the local file exists and ``overwrite=False``.
    """
    target = local_config_path(Path(path).expanduser())
    if not overwrite and target.exists():
        raise FileExistsError(errno.EEXIST, 'local config exists and overwrite=False', str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, to_yaml(config))
    return True


def normalized_value(value):
    """Return ``value`` as a config holds it after a save and a reload (``37 deg`` -> ``37.0 deg``).

    >>> normalized_value('37 deg'), normalized_value({'alt': '40 deg', 'n': 3})
    ('37.0 deg', {'alt': '40.0 deg', 'n': 3})
    """
    import copy

    from panoptes_cli.serializers import deserialize_all_objects

    return plain_config(deserialize_all_objects(copy.deepcopy(value)))


def config_changes(config: dict, base: dict) -> dict:
    """Return a copy of ``config`` holding only what differs from ``base``; comments stay.

    Mappings are compared key by key, anything else (lists included) as a whole. The
    comments on the kept keys stay; the file's opening comment, which describes the
    whole file, does not.

    >>> config_changes({'location': {'horizon': '45 deg', 'name': 'MLO'}, 'pan_id': 'PAN001'},
    ...                {'location': {'horizon': '30 deg', 'name': 'MLO'}, 'pan_id': 'PAN001'})
    {'location': {'horizon': '45 deg'}}
    """
    import copy

    changes = copy.deepcopy(config)
    _drop_unchanged(changes, base)
    if getattr(changes, 'ca', None) is not None:
        changes.ca.comment = None
    return changes


def _drop_unchanged(config: dict, base: dict) -> None:
    for key in list(config):
        if key not in base:
            continue
        value, original = config[key], base[key]
        if isinstance(value, dict) and isinstance(original, dict):
            _drop_unchanged(value, original)
            if not value:
                del config[key]
        elif value == original:
            del config[key]


def base_config(config_files, load_local: bool = True) -> dict:
    """Load the files a server serves, without the local file of the last one: what its changes differ from.

    The earlier files keep their local files (with ``load_local``), as the server loads them.
    """
    if isinstance(config_files, (str, os.PathLike)):
        config_files = [config_files]
    config = None
    for position, name in enumerate(config_files):
        layer = load_config(name, parse=True, strict=True,
                            load_local=load_local and position < len(config_files) - 1)
        config = layer if config is None else deep_merge(config, layer)
    return plain_config(config)


def local_changes(config_file=None) -> list[dict]:
    """Return what the local file beside ``config_file`` changes, one record per dotted key.

    Each record is ``{"key", "base", "local"}`` with values as the server sends them;
    ``base`` is None for a key only the local file has. No local file: no changes.

    >>> import pathlib, tempfile
    >>> directory = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (directory / 'pocs.yaml').write_text('location:\\n  horizon: 30 deg\\n  name: MLO\\n')
    >>> _ = (directory / 'pocs_local.yaml').write_text('location:\\n  horizon: 45 deg\\nextra: 1\\n')
    >>> local_changes(directory / 'pocs.yaml')
    [{'key': 'location.horizon', 'base': '30.0 deg', 'local': '45.0 deg'}, {'key': 'extra', 'base': None, 'local': 1}]
    """
    path = Path(config_file or default_config_file()).expanduser()
    base = base_config(path)
    merged = plain_config(load_config(path, parse=True, strict=True))
    return [{'key': key, 'base': lookup(base, key), 'local': value}
            for key, value in _flat_items(config_changes(merged, base))]


def _flat_items(config: dict, prefix: str = ''):
    for key, value in config.items():
        if isinstance(value, dict) and value:
            yield from _flat_items(value, f'{prefix}{key}.')
        else:
            yield f'{prefix}{key}', value


def parse_config_directories(directories: dict, must_exist: bool = False) -> dict:
    """Make the relative directories of a ``directories`` mapping absolute, under its ``base``.

    Given a ``base`` entry that is an absolute directory path, prepend it to
    every other relative directory entry. With ``must_exist=True``, an entry is
    only changed if the resulting directory exists. The input is not modified.

    >>> dirs_config = dict(base='/var/panoptes', foo='bar', baz='bam')
    >>> # If the relative dir doesn't exist but is required, return as is.
    >>> parse_config_directories(dirs_config, must_exist=True)
    {'base': '/var/panoptes', 'foo': 'bar', 'baz': 'bam'}

    >>> # Default is to return anyway.
    >>> parse_config_directories(dirs_config)
    {'base': '/var/panoptes', 'foo': '/var/panoptes/bar', 'baz': '/var/panoptes/bam'}

    >>> # If 'base' is not a valid absolute directory, return all as is.
    >>> dirs_config = dict(base='panoptes', foo='bar', baz='bam')
    >>> parse_config_directories(dirs_config, must_exist=False)
    {'base': 'panoptes', 'foo': 'bar', 'baz': 'bam'}

    Args:
        directories (dict): Usually the ``directories`` entry of the config.
        must_exist (bool): Only change an entry if its directory exists, default False.

    Returns:
        dict: A copy with the relative directories resolved against ``base``.
    """
    parsed = dict(directories)
    base = parsed.get('base')
    if not isinstance(base, str) or not os.path.isabs(base):
        return parsed
    for name, value in parsed.items():
        if name == 'base' or not isinstance(value, str) or os.path.isabs(value):
            continue
        full_path = os.path.join(base, value)
        if must_exist and not os.path.isdir(full_path):
            continue
        parsed[name] = full_path
    return parsed


def plain_config(config):
    """Return the config with every value as it is sent: Quantities as strings, and so on.

    ruamel's YAML-only scalar types become plain ones (an anchored boolean
    would otherwise be sent as ``1``, a tagged scalar not at all); YAML
    comments on mappings and lists are kept.

    >>> from panoptes_cli.serializers import from_yaml
    >>> plain_config(from_yaml('horizon: 30 deg\\nflag: &on true\\nsame: *on\\nodd: !thing 42'))
    {'horizon': '30.0 deg', 'flag': True, 'same': True, 'odd': '42'}
    """
    return _plain_values(serialize_all_objects(config))


def _plain_values(obj):
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _plain_values(value)
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            obj[index] = _plain_values(value)
    elif isinstance(obj, ScalarBoolean):
        return bool(obj)
    elif isinstance(obj, TaggedScalar):
        return str(obj.value)
    elif isinstance(obj, bytes):
        return obj.decode('utf-8', errors='replace')
    return obj


def _check_key(key) -> None:
    """Raise InvalidConfig unless ``key`` is a dotted key such as ``cameras.devices[1].model``."""
    if not isinstance(key, str):
        raise InvalidConfig(f'bad config key {key!r}: a key is a string like location.horizon, '
                            f'not a {type(key).__name__}')
    try:
        check_key(key)
    except LimitExceeded as err:
        raise InvalidConfig(f'bad config key {key[:40]!r}...: {err}') from None
    if not key.isprintable():
        raise InvalidConfig(f'bad config key {key!r}: it holds a line break or another '
                            'control character')
    if _KEY.fullmatch(key):
        return
    parts = key.split('.')
    for position, part in enumerate(parts):
        if _KEY.fullmatch(part):
            continue
        if part == '' or part.startswith('['):
            rest = '.'.join(parts[position + 1:])
            why = f"empty name before '.{rest}'" if rest else 'empty name at the end'
        else:
            why = f'{part!r} is not a name with optional [N] list indexes'
        raise InvalidConfig(f'bad config key {key!r}: {why}; '
                            'write keys like cameras.devices[1].model')


def top_name(key: str) -> str:
    """Return the top-level name a dotted key starts with.

    >>> top_name('cameras.devices[1].model')
    'cameras'
    """
    _check_key(key)
    return _NAME.match(key)[0]


def lookup(config: dict, key: str | None, default=None):
    """Return the value at a dotted key (``None`` or ``''`` for the whole config), else ``default``.

    A name that is not there, an index past the end of a list, or a path that
    runs into a plain value all count as missing.

    >>> config = {'cameras': {'devices': [{'model': 'canon'}, {'model': 'zwo'}]}}
    >>> lookup(config, 'cameras.devices[-1].model')
    'zwo'
    >>> lookup(config, 'cameras.devices[2].model', default='none')
    'none'
    >>> lookup(config, 'location..horizon')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidConfig: InvalidConfig: bad config key 'location..horizon': empty name before '.horizon'; write keys like cameras.devices[1].model
    """
    if key is None or key == '':
        return config
    _check_key(key)
    cut = Cut(config)
    try:
        # scalpl would take [N] from a string or a mapping too: only lists have items here.
        if '[' in key and not all(isinstance(cut[key[:index.start()]], list)
                                  for index in _INDEX.finditer(key)):
            return default
        return cut[key]
    except (KeyError, IndexError, TypeError):
        return default


def assign(config: dict, key: str, value) -> None:
    """Set the value at a dotted key, creating missing (or None) parent mappings.

    Nothing changes unless the whole key can be set: a list index must exist,
    and a path cannot run through a plain value (that would silently drop it).

    >>> config = {'cameras': {'devices': [{'model': 'canon'}]}, 'name': 'PAN000'}
    >>> assign(config, 'cameras.devices[0].model', 'zwo')
    >>> assign(config, 'scheduler.fields.file', 'simple.yaml')
    >>> config
    {'cameras': {'devices': [{'model': 'zwo'}]}, 'name': 'PAN000', 'scheduler': {'fields': {'file': 'simple.yaml'}}}
    >>> assign(config, 'cameras.devices[3].model', 'zwo')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidConfig: InvalidConfig: cannot set cameras.devices[3].model: list index 3 is out of range, cameras.devices has 1 item(s)
    >>> assign(config, 'name.first', 'x')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidConfig: InvalidConfig: cannot set name.first: name is a str, not a mapping
    """
    _check_key(key)
    cut = Cut(config)
    # Lists are never created or extended, so every [N] must name an existing item.
    for index in _INDEX.finditer(key):
        where, position = key[:index.start()], int(index[1])
        items = lookup(config, where)
        if items is None:
            raise InvalidConfig(f'cannot set {key}: {where} does not exist, so it has no list to index')
        if not isinstance(items, list):
            raise InvalidConfig(f'cannot set {key}: {where} is a {type(items).__name__}, not a list')
        if not -len(items) <= position < len(items):
            raise InvalidConfig(f'cannot set {key}: list index {position} is out of range, '
                                f'{where} has {len(items)} item(s)')
    if key.endswith(']'):
        cut[key] = value
    else:
        parent, _, name = key.rpartition('.')
        _mapping_at(cut, parent, key)[name] = value


def _mapping_at(cut: Cut, path: str, key: str) -> dict:
    """Return the mapping at ``path``, first creating it, and its parents, where absent or None.

    Parents are created only once every check above them has passed, so a
    refused key changes nothing.
    """
    if not path:
        return cut.data
    try:
        node = cut[path]
    except (KeyError, TypeError):
        node = None  # absent, or below something that is: the check moves up a level
    if node is None:
        node = {}
        if path.endswith(']'):
            cut[path] = node  # a None list item: assign() has checked the item exists
        else:
            parent, _, name = path.rpartition('.')
            _mapping_at(cut, parent, key)[name] = node
    elif not isinstance(node, dict):
        raise InvalidConfig(f'cannot set {key}: {path} is a {type(node).__name__}, not a mapping')
    return node
