"""A unit's configuration: YAML files, the config server and its client.

- :mod:`panoptes_cli.config.helpers`: load config files (with their
  ``<stem>_local.yaml`` overrides), save changes, dotted keys.
- :mod:`panoptes_cli.config.server`: the config server (``config_server()``
  starts one in a background process).
- :mod:`panoptes_cli.config.client`: ``get_config()``, ``set_config()`` and
  friends, which talk to a running server.

The submodules are imported on demand, so ``from panoptes_cli.config import
client`` does not load the server.
"""
