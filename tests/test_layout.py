"""The package's shape: small modules, no import cycle, and the model apart from the data."""

import ast
import os

import pytest

from conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "vae_tf")
MODULES = sorted(name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py"))
MAX_LINES = 400


def _imports(module: str) -> set:
    """The vae_tf modules that `module` imports at its top level."""
    tree = ast.parse(open(os.path.join(PACKAGE, module + ".py")).read())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "vae_tf":
            found |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vae_tf."):
            found.add(node.module.split(".")[1])
    return found


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
    with open(os.path.join(PACKAGE, module + ".py")) as source:
        assert sum(1 for _ in source) <= MAX_LINES


def test_no_module_imports_itself_through_others():
    assert [module for module in MODULES if module in _reachable(module)] == []


def test_the_model_does_not_pull_in_the_data_sets():
    """Building a model needs neither tensorflow-datasets, Pillow nor the downloads."""
    for module in ("models", "networks", "priors", "hierarchy", "flows", "losses"):
        assert not {"data", "image_files", "downloads"} & ({module} | _reachable(module)), module
