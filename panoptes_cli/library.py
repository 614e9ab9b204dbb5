"""Loading Python modules and shared C libraries by name."""

import ctypes
import ctypes.util
import importlib

from panoptes_cli.error import NotFound


def load_module(module_name: str):
    """Dynamically load a module.

    >>> error = load_module('panoptes_cli.error')
    >>> error.__name__
    'panoptes_cli.error'
    >>> error.__package__
    'panoptes_cli'
    >>> load_module('panoptes_cli.no_such_module')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.NotFound: NotFound: cannot import module panoptes_cli.no_such_module: No module named 'panoptes_cli.no_such_module'

    Raises:
        panoptes_cli.error.NotFound: If the module cannot be imported.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise NotFound(f'cannot import module {module_name}: {err}') from err


def load_c_library(name: str, path: str | None = None, mode: int = ctypes.DEFAULT_MODE, **kwargs):
    """Load a shared library (.so/.dylib/.dll) by name, or from ``path`` when given.

    >>> libc = load_c_library('c')
    >>> load_c_library('no_such_library_here')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.NotFound: NotFound: cannot find the shared library 'no_such_library_here'; pass its path

    Args:
        name (str): Library name without the ``lib`` prefix or suffixes, e.g. ``fli``.
        path (str, optional): Full path to the library, e.g. ``/usr/local/lib/libfli.so``.
        mode (int, optional): dlopen(3) mode, default ``ctypes.DEFAULT_MODE``.

    Returns:
        ctypes.CDLL: The loaded library.

    Raises:
        panoptes_cli.error.NotFound: If no path was given and the library cannot be found.
        OSError: If the loader cannot load the library.
    """
    if path is None:
        path = ctypes.util.find_library(name)
        if path is None:
            raise NotFound(f'cannot find the shared library {name!r}; pass its path')
    return ctypes.CDLL(path, mode=mode, **kwargs)
