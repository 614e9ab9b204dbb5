"""ruamel.yaml with a ``dump`` that can return the YAML text.

Its own module so that :mod:`panoptes_cli.serializers` loads ruamel.yaml only
when YAML is read or written: commands that only speak JSON start without it.
"""

import io

from ruamel.yaml import YAML


class StringYAML(YAML):
    """A ruamel YAML (round-trip, so comments are kept) whose ``dump`` can return a string.

    >>> StringYAML().dump({'answer': 42})
    'answer: 42\\n'
    """

    def dump(self, data, stream=None, **kwargs):
        """Dump ``data`` as YAML to ``stream``, or return it as a string when no stream is given."""
        if stream is not None:
            return super().dump(data, stream, **kwargs)
        buffer = io.StringIO()
        super().dump(data, buffer, **kwargs)
        return buffer.getvalue()
