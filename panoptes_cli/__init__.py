"""panoptes_cli: the Python core of the ``panoptes`` command-line toolbox.

It re-implements the documented API of panoptes-utils 0.2.29 under the
``panoptes_cli`` name. The manual's top-level names are importable from here;
they load on first use so that importing the package stays cheap.

>>> from panoptes_cli import listify
>>> listify(42)
[42]
"""

import importlib

__version__ = '0.1.0'

_LAZY_NAMES = {
    'current_time': 'panoptes_cli.time',
    'flatten_time': 'panoptes_cli.time',
    'CountdownTimer': 'panoptes_cli.time',
    'wait_for_events': 'panoptes_cli.time',
    'listify': 'panoptes_cli.utils',
    'get_quantity_value': 'panoptes_cli.utils',
    'string_to_params': 'panoptes_cli.utils',
    'image_id_from_path': 'panoptes_cli.utils',
    'sequence_id_from_path': 'panoptes_cli.utils',
    'moving_average': 'panoptes_cli.utils',
    'DelaySigTerm': 'panoptes_cli.utils',
    'get_free_space': 'panoptes_cli.utils',
    'altaz_to_radec': 'panoptes_cli.utils',
}

__all__ = sorted(_LAZY_NAMES) + ['__version__']


def __getattr__(name):
    try:
        module_name = _LAZY_NAMES[name]
    except KeyError:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}') from None
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
