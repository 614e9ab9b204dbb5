"""The structure reads top-down: commands -> core areas -> base modules, with no circles.

Read from the source with ast, so every import counts, including those inside
functions (which hide a circle from Python but not from a reader).
"""

import ast
from pathlib import Path

import pytest

from conftest import REPO_ROOT

CORE = REPO_ROOT / 'panoptes_cli'
COMMANDS = REPO_ROOT / 'commands'


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join([package, *parts])


def modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (commands/ is panoptes_cli.commands)."""
    found = {module_name(path, CORE, 'panoptes_cli'): path for path in CORE.rglob('*.py')}
    found.update({module_name(path, COMMANDS, 'panoptes_cli.commands'): path
                  for path in COMMANDS.rglob('*.py')})
    return found


MODULES = modules()
# `python -m panoptes_cli` is the executable's twin: it belongs to the command layer.
ENTRY_POINTS = {'panoptes_cli.__main__'}


def in_command_layer(module: str) -> bool:
    return module.startswith('panoptes_cli.commands') or module in ENTRY_POINTS


def imported_names(path: Path) -> set[str]:
    """The dotted names a module imports: modules, or ``package.name`` for ``from package import name``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f'{node.module}.{alias.name}' for alias in node.names)
    return {name for name in names if name.split('.')[0] == 'panoptes_cli'}


def as_module(name: str) -> str:
    """The module a dotted name lives in: itself if it is one, else the nearest enclosing one."""
    while name not in MODULES:
        name = name.rpartition('.')[0]
    return name


GRAPH = {module: {as_module(name) for name in imported_names(path)} - {module}
         for module, path in MODULES.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_package():
    assert {'panoptes_cli', 'panoptes_cli.error', 'panoptes_cli.commands.main'} <= set(MODULES)
    assert 'panoptes_cli.error' in GRAPH['panoptes_cli.utils']


def test_circles_are_found():
    assert circles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_the_core_never_imports_the_commands():
    upward = {module: sorted(target for target in targets
                             if target.startswith('panoptes_cli.commands'))
              for module, targets in GRAPH.items() if not in_command_layer(module)}
    assert {module: targets for module, targets in upward.items() if targets} == {}


def test_images_modules_do_not_import_their_package():
    upward = sorted(module for module, targets in GRAPH.items()
                    if module.startswith('panoptes_cli.images.') and 'panoptes_cli.images' in targets)
    assert upward == []


@pytest.mark.parametrize('layer', ['core', 'commands'])
def test_no_import_circles(layer):
    in_layer = {module: targets for module, targets in GRAPH.items()
                if in_command_layer(module) == (layer == 'commands')}
    assert circles(in_layer) == []
