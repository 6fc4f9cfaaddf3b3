"""The package's shape: small modules in packages by concern, no import cycle, and the
model apart from the data and the run."""

import ast
import os

import pytest

from conftest import REPO_ROOT

PACKAGES = ("data", "evaluation", "figures", "model", "run")


def _module_names():
    names = []
    for folder, _, files in os.walk(os.path.join(REPO_ROOT, "vae_tf")):
        package = os.path.relpath(folder, REPO_ROOT).replace(os.sep, ".")
        names += [f"{package}.{name[:-3]}".replace(".__init__", "")
                  for name in files if name.endswith(".py")]
    return sorted(names)


MODULES = _module_names()


def _path(module: str) -> str:
    base = os.path.join(REPO_ROOT, *module.split("."))
    return os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py"


def _imports(module: str) -> set:
    """The vae_tf modules that `module` imports at its top level."""
    tree = ast.parse(open(_path(module)).read())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vae_tf"):
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                found.add(dotted if dotted in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in MODULES}
    # The root package is the Python API on top of everything; a module that reads
    # `vae_tf.__version__` from it does not depend on what it imports.
    return found - {module, "vae_tf"}


GRAPH = {module: _imports(module) for module in MODULES}


def _reachable(start: str) -> set:
    seen, todo = set(), [start]
    while todo:
        for module in GRAPH[todo.pop()]:
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return seen


@pytest.mark.parametrize("module", MODULES)
def test_no_module_is_longer_than_400_lines(module):
    with open(_path(module)) as source:
        assert sum(1 for _ in source) <= 400


def test_no_module_imports_itself_through_others():
    assert [module for module in MODULES if module in _reachable(module)] == []


def test_every_module_but_the_commands_and_the_core_lives_in_a_package_by_concern():
    top = {module.split(".")[1] for module in MODULES if module.count(".") == 1}
    assert set(PACKAGES) <= top
    commands = {"train", "evaluate", "visualize", "export", "benchmark", "explore"}
    core = {"api", "cli", "compat", "config", "datasets", "errors", "files", "log", "pixels",
            "preset_flags"}
    assert top - set(PACKAGES) == commands | core


def test_the_model_does_not_pull_in_the_data_sets_or_the_run():
    """Building a model needs neither tensorflow-datasets, Pillow, the downloads nor a run."""
    for module in (name for name in MODULES if name.startswith("vae_tf.model.")):
        reached = {module} | _reachable(module)
        assert not {name for name in reached
                    if name.startswith(("vae_tf.data", "vae_tf.run"))}, module
