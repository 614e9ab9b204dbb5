"""The ``panoptes`` executable: the root command, its global options and the groups."""

import os
import sys

import typer
from typer.core import TyperGroup

from panoptes_cli import __version__
from panoptes_cli.commands import output


class PanoptesGroup(TyperGroup):
    """The root group: runs every command under the one error contract.

    Overriding ``main`` (rather than wrapping the console script) means Typer's
    CliRunner in the tests sees exactly what a user's shell sees.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _style_metavars(self)

        def invoke():
            return super(PanoptesGroup, self).main(
                args=args, prog_name=prog_name or 'panoptes', complete_var=complete_var,
                standalone_mode=False, **extra)

        if not standalone_mode:
            return invoke()
        sys.exit(output.run_main(invoke))


def _style_metavars(command) -> None:
    """Show every value placeholder one way in --help: UPPER-CASE words.

    FILE... (required), [KEY] (optional), --port INTEGER, --to [fits|pgm|jpg],
    --output-dir DIR; an explicit metavar (SECONDS, EVENT) stays as written.
    """
    for param in command.params:
        if param.param_type_name == 'argument':
            name = (param.metavar or param.name).upper().removesuffix('...')
            param.metavar = f'{name}...' if param.nargs == -1 else name
            param.make_metavar = _argument_metavar.__get__(param)
        elif not param.is_flag and param.metavar is None:
            param.metavar = _type_metavar(param.type)
    for sub in getattr(command, 'commands', {}).values():
        _style_metavars(sub)


def _argument_metavar(self, ctx=None, *, usage: bool = False) -> str:
    return f'[{self.metavar}]' if usage and not self.required else self.metavar


def _type_metavar(kind) -> str:
    # By what the type has: Typer builds commands with its own copy of Click's types.
    if getattr(kind, 'choices', None):
        return '[' + '|'.join(str(choice) for choice in kind.choices) + ']'
    if hasattr(kind, 'file_okay'):
        return 'DIR' if not kind.file_okay else 'FILE' if not kind.dir_okay else 'PATH'
    return {'int': 'INTEGER', 'integer': 'INTEGER', 'float': 'NUMBER'}.get(kind.name.split()[0], 'TEXT')


HELP = """\
Tools for PANOPTES robotic-telescope observatories.

Data goes to stdout as JSON (or NDJSON for streams); logs, progress and
errors go to stderr. Exit status: 0 success, 1 failure (a batch: any item
failed), 2 usage error, 130 interrupted (143 SIGTERM, 129 SIGHUP).

Example:  panoptes time now -f flat
"""

app = typer.Typer(
    cls=PanoptesGroup,
    name='panoptes',
    help=HELP,
    no_args_is_help=True,
    context_settings={'help_option_names': ['-h', '--help']},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _show_version(value: bool):
    if value:
        output.emit_text(f'panoptes-cli {__version__}')
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, '--version', callback=_show_version, is_eager=True,
                                 help='Show the version and exit.'),
    verbose: bool = typer.Option(False, '--verbose', '-v',
                                 help='Log panoptes_cli at DEBUG level to stderr.'),
    debug: bool = typer.Option(False, '--debug',
                               help='Show a traceback with errors (also PANOPTES_DEBUG=1).'),
):
    output.debug_mode = debug
    # The core reads PANOPTES_LOG_LEVEL when its logger is first imported;
    # by default the CLI shows warnings, --verbose everything.
    level = 'DEBUG' if verbose else os.environ.get('PANOPTES_LOG_LEVEL', 'WARNING')
    os.environ['PANOPTES_LOG_LEVEL'] = level
    if 'panoptes_cli.logging' in sys.modules:
        sys.modules['panoptes_cli.logging'].log_to_stderr(level)


def _add_groups():
    from panoptes_cli.commands import (
        config_commands, cr2_commands, db_commands, fits_commands, image_commands,
        serial_commands, time_commands)

    for module in (config_commands, fits_commands, cr2_commands, image_commands,
                   serial_commands, db_commands, time_commands):
        app.add_typer(module.app, name=module.NAME, help=module.app.info.help)


_add_groups()


def main():
    """Console-script entry point for ``panoptes``."""
    app()


if __name__ == '__main__':
    main()
