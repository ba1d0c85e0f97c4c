"""``harness plugin new``: write a complete, installable method plugin package.

The files come from ``harness/plugin_template/*.tmpl`` (``string.Template`` placeholders), so
what a plugin author gets can be read and changed as plain files.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from string import Template

from harness.errors import HarnessError

TEMPLATE_DIR = Path(__file__).resolve().parent / "plugin_template"
PLUGIN_NAME_PATTERN = r"[a-z][a-z0-9_]*"
# class names the templates already use for imported names
TAKEN_CLASS_NAMES = {"Any", "FitContext", "LabeledTexts", "Method", "MethodContract", "MethodParams"}


class ScaffoldError(HarnessError):
    """The plugin name or the target folder is not usable."""


def plugin_files(name: str) -> dict[str, str]:
    """Template file -> path inside the new package, for a plugin (and method) called ``name``."""
    package = f"harness_{name}"
    return {
        "pyproject.toml.tmpl": "pyproject.toml",
        "README.md.tmpl": "README.md",
        "__init__.py.tmpl": f"{package}/__init__.py",
        "test_plugin.py.tmpl": f"tests/test_{package}.py",
    }


def new_plugin(name: str, parent: Path) -> Path:
    """Write the package for method ``name`` into ``parent/name`` and return that folder."""
    from harness import __version__

    if not re.fullmatch(PLUGIN_NAME_PATTERN, name):
        raise ScaffoldError(
            f"plugin name {name!r}: expected lowercase letters, digits and underscores, starting "
            f"with a letter (it becomes the method name and the module harness_{name})"
        )
    package = f"harness_{name}"
    class_name = "".join(part.capitalize() for part in name.split("_"))
    if class_name in TAKEN_CLASS_NAMES:
        raise ScaffoldError(f"plugin name {name!r}: its class name {class_name} is taken by the harness API; choose another")
    if importlib.util.find_spec(package) is not None:
        raise ScaffoldError(f"plugin name {name!r}: a module {package} is already installed; choose another")
    target = parent / name
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} already exists and is not empty; choose another NAME or --dir")
    values = {
        "method_name": name,
        "package": package,
        "dist_name": f"harness-{name.replace('_', '-')}",
        "class_name": class_name,
        "harness_version": __version__,
    }
    for template_name, relative in plugin_files(name).items():
        text = Template((TEMPLATE_DIR / template_name).read_text(encoding="utf-8")).substitute(values)
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
