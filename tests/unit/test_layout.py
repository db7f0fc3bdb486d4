"""The layout's rules that imports can break: a tool (tools/*.py) imports no other tool, only the library
tools/lib/; the library imports no tool; the in-container agents import nothing of the project's packages
but each other (their text is copied into containers)."""
import ast
import glob
import os

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.unit


def _imports(path: str) -> set[str]:
    tree = ast.parse(open(path).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return found


def _py(pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(REPO_ROOT, pattern)))


@pytest.mark.parametrize("path", _py("tools/*.py") + _py("tools/lib/*.py"), ids=os.path.basename)
def test_tools_import_only_the_library(path):
    tools = {i for i in _imports(path) if i.startswith("tools.") and i != "tools.lib"}
    assert all(i.startswith("tools.lib.") for i in tools), sorted(tools)


@pytest.mark.parametrize("path", _py("infra/agents/*.py"), ids=os.path.basename)
def test_agents_import_nothing_of_the_project_but_each_other(path):
    ours = {i for i in _imports(path) if i.split(".")[0] in ("infra", "tools", "stacks", "devkit")}
    # restore_check's drift check is the service's own (its image has the `service` package).
    assert ours <= {"infra", "infra.backup_store", "infra.snapshot_agent"}, sorted(ours)
