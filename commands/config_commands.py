"""``panoptes config``: The config server and config files."""

import json
import os
import sys

import typer

from panoptes_cli.commands import options, output

NAME = 'config'
app = typer.Typer(help='The config server and config files.', no_args_is_help=True)


def _host_option():
    return typer.Option(None, '--host', help='Config server host; default $PANOPTES_CONFIG_HOST, '
                                              'else localhost.')


def _port_option():
    return typer.Option(None, '--port', help='Config server port; default $PANOPTES_CONFIG_PORT, '
                                              'else 6563.')


def _parse_value(text: str, as_json: bool):
    """Read a command-line value: as JSON, or like a YAML value (``45``, ``true``, ``37 deg``)."""
    from panoptes_cli.limits import LimitExceeded, loads

    if as_json:
        try:
            return loads(text)
        except LimitExceeded as err:
            raise typer.BadParameter(f'refused: {err}') from None
        except ValueError as err:
            raise typer.BadParameter(f'not valid JSON: {err}') from None
    from panoptes_cli.serializers import parse_typed_value

    # Only [..] and {..} make lists and mappings: 'Unit: PAN001' stays a string.
    try:
        return parse_typed_value(text, containers=True)
    except LimitExceeded as err:
        raise typer.BadParameter(f'refused: {err}; write the value out without deep nesting '
                                 'or YAML aliases') from None


def _emit_server_json(text: str, as_sent: bool = False) -> None:
    """Print JSON the server sent: as is in a pipe (or when asked), else through emit_json.

    emit_json indents it on a terminal, and with -r/--raw prints a string bare.
    """
    if as_sent or not (output.environment().stdout_isatty or output.raw_requested()):
        output.emit_text(text)
    else:
        output.emit_json(json.loads(text))


@app.command()
def run(
    config_file: str = typer.Argument(
        None, metavar='CONFIG_FILE',
        help='YAML config file to serve; default $PANOPTES_CONFIG_FILE, else the '
             'default unit config bundled with panoptes-cli.'),
    host: str = typer.Option(
        None, '--host', help='Address to listen on; default $PANOPTES_CONFIG_HOST, else '
                             '127.0.0.1 (this host only).'),
    port: int = typer.Option(None, '--port', help='Port; default $PANOPTES_CONFIG_PORT, else 6563.'),
    public: bool = typer.Option(
        False, '--public',
        help='Listen on every interface (0.0.0.0) so other hosts can connect: anyone who can '
             'reach the port can read and change the config (see Security in the README).'),
    allow_hosts: list[str] = typer.Option(
        None, '--allow-host', metavar='NAME',
        help='Also answer requests naming the server NAME (their Host header), e.g. the '
             "host's DNS name for other hosts; repeat for more. Loopback names, the listening "
             'address and, with --public, this host\'s own name and any address are always '
             'answered.'),
    load_local: bool = typer.Option(
        True, '--load-local/--no-load-local',
        help='Merge <name>_local.yaml over the config file.'),
    save_local: bool | None = typer.Option(
        None, '--save-local/--no-save-local',
        help='Save every set to <name>_local.yaml before acknowledging it; default on, '
             'except when serving the bundled default config.'),
):
    """Serve a config file over HTTP, in the foreground.

    Logs one line with the server's URL to stderr, then serves until Ctrl-C or
    SIGTERM (or 'panoptes config stop'), finishing requests in hand first. A
    config file that is missing or not valid YAML stops it before it starts,
    naming the file and line.

    Examples:

    \b
      panoptes config run
      panoptes config run $PANDIR/conf_files/pocs.yaml --port 6564
      PANOPTES_CONFIG_FILE=pocs.yaml panoptes config run --no-save-local
    """
    if public and host:
        raise typer.BadParameter('give --public or --host, not both', param_hint="'--public'")
    if config_file == '-':
        raise typer.BadParameter('the server reloads and saves its config file, so it cannot '
                                 'serve stdin; give a file path', param_hint="'CONFIG_FILE'")
    from panoptes_cli.config.helpers import default_config_file, is_bundled_config
    from panoptes_cli.config.server import ConfigServer

    # Absolute, so the log line and the server's messages say which file wherever they are read.
    config_file = os.path.abspath(config_file or default_config_file())
    if save_local is None:
        save_local = not is_bundled_config(config_file)
    server = ConfigServer(config_file, host='0.0.0.0' if public else host, port=port,
                          load_local=load_local, save_local=save_local,
                          allow_hosts=allow_hosts or ())
    saving = (f'saving changes to {server.store.local_path}' if save_local
              else 'changes are not saved')
    sys.stderr.write(f'Serving {config_file} at {server.url} ({saving}); Ctrl-C stops it\n')
    sys.stderr.flush()
    server.run()


@app.command()
@options.raw_output
def get(
    key: str = typer.Argument(
        None, help='Dotted key such as location.horizon or cameras.devices[1].model; '
                   'none for the whole config.'),
    default: str = typer.Option(
        None, '--default', help='Print this (read like a YAML value) when the key is missing, '
                                'and succeed.'),
    no_parse: bool = typer.Option(
        False, '--no-parse', help="Print the value exactly as the server sent it (with --file: "
                                  "as written, e.g. '30 deg' rather than '30.0 deg')."),
    config_file: str = typer.Option(
        None, '--file', help='Read this YAML config file (and its _local file) instead of '
                             'asking the server; - reads stdin.'),
    wait: float = typer.Option(
        0, '--wait', metavar='SECONDS', min=0,
        help='Wait up to SECONDS for the server to answer (a unit starting up) before asking.'),
    host: str = _host_option(),
    port: int = _port_option(),
):
    """Print a config value as JSON (Quantities as "30.0 deg").

    Asks the config server, or with --file reads a config file directly (no
    server needed). A missing key prints null and exits 1, unless --default
    is given. With --wait, a server that is still starting is waited for; one
    that has not answered by then is an error.

    Examples:

    \b
      panoptes config get location.horizon
      panoptes config get cameras.devices[1].model
      panoptes config get location --file pocs.yaml
      horizon=$(panoptes config get location.horizon --default '30 deg')
      unit=$(panoptes config get pan_id -r)
      panoptes config get location --wait 30
    """
    if config_file is not None and wait:
        raise typer.BadParameter('--wait is for the server; --file reads no server',
                                 param_hint="'--wait'")
    if config_file is not None:
        value = _value_from_file(config_file, key, parse=not no_parse)
        if value is not None:
            output.emit_json(value)
            return
    else:
        from panoptes_cli.config.client import get_config, wait_for_server

        if wait:
            wait_for_server(host, port, timeout=wait)
        text = get_config(key, host=host, port=port, parse=False, verbose=False, strict=True)
        if text is not None:
            _emit_server_json(text, as_sent=no_parse)
            return
    if default is not None:
        output.emit_json(_parse_value(default, as_json=False))
        return
    output.emit_text('null')
    raise typer.Exit(1)


def _value_from_file(config_file: str, key: str | None, parse: bool):
    """Return the value at ``key`` in a config file (or stdin) as JSON-ready data, None if missing."""
    from panoptes_cli.config import helpers

    if config_file == '-':
        config = helpers.parse_config_text(sys.stdin.read(), '<stdin>', parse=parse) or {}
    else:
        config = helpers.load_config(config_file, parse=parse, strict=True)
    return helpers.plain_config(helpers.lookup(config, key))


@app.command('set')
@options.raw_output
def set_value(
    key: str = typer.Argument(..., help='Dotted key such as location.horizon; missing parents '
                                        'are created.'),
    value: str = typer.Argument(..., help="The value, read like a YAML value: 45, true, "
                                          "'37 deg', '[1, 2]' (see --json)."),
    as_json: bool = typer.Option(False, '--json', help='Read VALUE as JSON instead.'),
    host: str = _host_option(),
    port: int = _port_option(),
):
    """Set a value on the config server; print what was set, as JSON.

    When the server saves local changes, it answers once the value is on disk.

    Examples:

    \b
      panoptes config set location.horizon '37 deg'
      panoptes config set cameras.devices '[{"model": "canon_gphoto2"}]' --json
    """
    from panoptes_cli.config.client import set_config

    output.emit_json(set_config(key, _parse_value(value, as_json), host=host, port=port,
                                parse=False, strict=True))


@app.command()
def stop(
    host: str = _host_option(),
    port: int = _port_option(),
):
    """Stop the config server, and wait until it has stopped.

    It finishes the requests in hand first (and saves what they set).

    Examples:

    \b
      panoptes config stop
      panoptes config stop --port 6564
    """
    from panoptes_cli.config.client import stop_server

    stop_server(host=host, port=port)


@app.command()
@options.records_output
def reset(
    defaults: bool = typer.Option(
        False, '--defaults', help='Reload without the _local files: back to the defaults '
                                  '(a server that saves changes renames its local file to a '
                                  'backup first, and says where).'),
    host: str = _host_option(),
    port: int = _port_option(),
):
    """Reload the config server's files, dropping unsaved changes.

    Prints the server's answer as JSON; with --defaults, "backup" names the file
    the old local changes were moved to (also said on stderr).

    Examples:

    \b
      panoptes config reset
      panoptes config reset --defaults
    """
    from panoptes_cli.config.client import reset_config

    answer = reset_config(host=host, port=port, load_local=False if defaults else None)
    if answer.get('backup'):
        sys.stderr.write(f"The old local config is kept as {answer['backup']}\n")
    output.emit_json(answer)


@app.command()
@options.records_output
def diff(
    config_file: str = typer.Argument(
        None, metavar='CONFIG_FILE',
        help='The config file whose _local file to compare; default $PANOPTES_CONFIG_FILE, '
             'else the bundled default config.'),
):
    """Print what the unit's _local file changes, one record per key (key, base, local).

    Reads the files (no server needed). A key that only the local file has
    shows base null. Nothing is printed when the local file changes nothing.

    Examples:

    \b
      panoptes config diff pocs.yaml
      panoptes config diff pocs.yaml --table
    """
    from panoptes_cli.config.helpers import local_changes

    for change in local_changes(config_file):
        output.emit_record(change)
