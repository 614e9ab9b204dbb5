"""The panoptes_cli logger: loguru's ``logger``, silent until enabled.

A library should not log unless asked to, so the ``panoptes_cli`` namespace
is disabled at import; ``logger.enable('panoptes_cli')`` turns it on. Setting
``PANOPTES_LOG_LEVEL`` (the ``panoptes`` command does: WARNING by default,
DEBUG with ``--verbose``) enables it with a short format on stderr.

>>> from panoptes_cli.logging import logger
>>> logger.debug('not shown: panoptes_cli logging is disabled by default')
"""

import contextlib
import os
import sys

from loguru import logger

_stderr_sink = None


def _stderr_format(record) -> str:
    """``Warning: <message>``: the level spelled as the CLI's own ``Error:`` and ``Warning:`` lines."""
    return record['level'].name.title() + ': {message}\n{exception}'


def log_to_stderr(level: str = 'DEBUG') -> None:
    """Enable panoptes_cli logging at ``level`` to stderr, replacing loguru's default sink."""
    global _stderr_sink
    if _stderr_sink is None:
        # loguru's default stderr sink; already gone if the application removed it.
        with contextlib.suppress(ValueError):
            logger.remove(0)
    else:
        logger.remove(_stderr_sink)
    _stderr_sink = logger.add(sys.stderr, level=level.upper(), format=_stderr_format)
    logger.enable('panoptes_cli')


logger.disable('panoptes_cli')
if os.environ.get('PANOPTES_LOG_LEVEL'):
    log_to_stderr(os.environ['PANOPTES_LOG_LEVEL'])

__all__ = ['logger', 'log_to_stderr']
