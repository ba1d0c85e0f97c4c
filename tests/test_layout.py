"""The core's imports run one way: no module of harness/ imports one later in the data flow (the
layers of docs/development.md's layout table, read from there) or one that imports it back; and
the plugins under plugins/ import only the public API (``harness`` and ``harness.toolkit``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import harness
import harness.toolkit

PACKAGE = Path(harness.__file__).parent
REPO = PACKAGE.parent
LAYOUT = REPO / "docs" / "development.md"
PUBLIC = {"harness": set(harness.__all__), "harness.toolkit": set(harness.toolkit.__all__)}
FACE = "__init__"  # what ``from harness import NAME`` reaches when NAME is no module


def _imported(tree: ast.AST, modules: set[str]) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of each import of harness anywhere in ``tree`` (functions too),
    except under TYPE_CHECKING; ``from harness import plan`` counts as the module ``harness.plan``."""
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and ast.unparse(block.test) == "TYPE_CHECKING" for node in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "harness":
            names = [alias.name for alias in node.names]
            if node.module == "harness":
                found += [(f"harness.{name}", [], node.lineno) for name in names if name in modules]
                names = [name for name in names if name not in modules]
                if not names:
                    continue
            found.append((node.module, names, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.split(".")[0] == "harness"]
    return found


def _core_modules() -> set[str]:
    return {path.stem for path in PACKAGE.glob("*.py")}


def _imports(path: Path) -> set[str]:
    """The harness modules that ``path`` imports (``__init__`` for names of the package's face)."""
    found = {module.split(".")[1] if "." in module else FACE
             for module, _, _ in _imported(ast.parse(path.read_text(encoding="utf-8")), _core_modules())}
    return found - {path.stem}


def read_layers(text: str) -> dict[str, int]:
    """Module -> its layer (0 first) from the layout table: one row per layer, in data-flow order;
    the first column names the row's files (``plan.py``); folders (``datasets_cfg/``) are skipped."""
    section = text.split("## Layout", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    layers: dict[str, int] = {}
    for number, row in enumerate(rows):
        for name in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if name.endswith(".py"):
                assert name[:-3] not in layers, f"{name} is in two rows of the layout table"
                layers[name[:-3]] = number
    return layers


def layer_violations(module: str, source: str, layers: dict[str, int]) -> list[str]:
    """Each import in core module ``module`` of a module later in the layers, as one line."""
    return [f"harness/{module}.py:{line} imports {imported} (row {layers[target] + 1}), "
            f"later than its own row {layers[module] + 1}"
            for imported, _, line in _imported(ast.parse(source), set(layers))
            if (target := imported.split(".")[1] if "." in imported else FACE) in layers and layers[target] > layers[module]]


def public_api_violations(path: str, source: str) -> list[str]:
    """Each import in plugin file ``path`` of the core beyond the public API, as one line."""
    problems = []
    for module, names, line in _imported(ast.parse(source), _core_modules()):
        if module not in PUBLIC:
            problems.append(f"{path}:{line} imports {module}: not the public API (harness, harness.toolkit)")
        elif unknown := sorted(set(names) - PUBLIC[module]):
            problems.append(f"{path}:{line} imports {', '.join(unknown)} from {module}, which does not export it")
    return problems


@pytest.fixture(scope="module")
def layers() -> dict[str, int]:
    return read_layers(LAYOUT.read_text(encoding="utf-8"))


def test_every_core_module_has_one_row_of_the_layout_table(layers):
    assert set(layers) == _core_modules(), "docs/development.md's layout table and harness/*.py differ"


def test_no_core_module_imports_one_later_in_the_data_flow(layers):
    problems = [line for module in sorted(layers) for line in
                layer_violations(module, (PACKAGE / f"{module}.py").read_text(encoding="utf-8"), layers)]
    assert problems == []


def test_the_layer_check_finds_a_later_import(layers):
    """The check itself can fail: an early module that imports a late one, in either spelling."""
    for source in ("from harness.cli import main\n", "def f():\n    from harness import publish\n"):
        (problem,) = layer_violations("records", source, layers)
        assert problem.startswith("harness/records.py:") and "later than its own row" in problem
    assert layer_violations("records", "from harness.store import write_json_atomic\n", layers) == []
    assert layer_violations("records", "if TYPE_CHECKING:\n    from harness.cli import main\n", layers) == []


def test_plugins_import_only_the_public_api():
    files = sorted((REPO / "plugins").rglob("*.py"))
    assert len(files) > 20
    problems = [line for path in files
                for line in public_api_violations(str(path.relative_to(REPO)), path.read_text(encoding="utf-8"))]
    assert problems == []


def test_the_public_api_check_finds_an_internal_import():
    public = "import harness\nfrom harness import Method, hookimpl\nfrom harness.toolkit import train\n"
    assert public_api_violations("p.py", public) == []
    found = public_api_violations("p.py", "from harness.cell import seed_everything\nimport harness.records\n"
                                          "from harness import plan\nfrom harness import nothing_public\n"
                                          "def f():\n    from harness.toolkit import run_cell\n")
    assert [line.split(" ", 1)[0] for line in found] == ["p.py:1", "p.py:2", "p.py:3", "p.py:4", "p.py:6"]


def test_every_toolkit_name_is_found_where_it_says():
    for name in harness.toolkit.__all__:
        assert getattr(harness.toolkit, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'run_cell'"):
        harness.toolkit.run_cell  # noqa: B018 - the attribute look-up is the test


def test_no_import_cycle_in_harness():
    graph = {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}
    assert {"plan", "cell", "driver", "executors", "records"} <= set(graph)
    visiting, done = [], set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, f"import cycle: {' -> '.join(visiting[visiting.index(module):] + [module])}"
        visiting.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_executors_know_nothing_of_the_driver():
    assert "driver" not in _imports(PACKAGE / "executors.py")
    assert '"serial"' not in (PACKAGE / "driver.py").read_text(encoding="utf-8")


def test_the_public_api_imports_no_torch_until_a_name_needs_it():
    import subprocess
    import sys

    code = ("import sys; from harness import Method, hookimpl; from harness.toolkit import cached_artifact, stable_hash; "
            "print('torch' in sys.modules); from harness.toolkit import train; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
