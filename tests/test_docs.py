"""Every hook in harness/hookspecs.py has a section in docs/hooks.md, as datasette checks its hooks;
the README stays a short front door and the docs site builds strictly."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"
SECTION = re.compile(r"^## (\w+)\((.*)\)\s*$", re.MULTILINE)


def _hookspecs() -> dict[str, list[str]]:
    """Hook name -> argument names, for every function marked as a hookspec."""
    return {
        name: list(inspect.signature(function).parameters)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "harness_spec")
    }


def _documented() -> dict[str, list[str]]:
    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    return {name: [a.strip() for a in args.split(",") if a.strip()] for name, args in SECTION.findall(text)}


def test_every_hookspec_is_documented_with_its_arguments():
    specs, documented = _hookspecs(), _documented()
    assert len(specs) >= 8
    missing = sorted(set(specs) - set(documented))
    assert not missing, f"hooks without a '## name(args)' section in docs/hooks.md: {missing}"
    for name, arguments in specs.items():
        assert documented[name] == arguments, f"docs/hooks.md documents {name}({', '.join(documented[name])}), the hookspec takes {arguments}"


def test_docs_name_no_hook_that_does_not_exist():
    stale = sorted(set(_documented()) - set(_hookspecs()))
    assert not stale, f"docs/hooks.md documents hooks that harness/hookspecs.py lacks: {stale}"


def test_plugin_guide_points_at_the_contract_suite_and_hooks():
    guide = (DOCS / "plugins.md").read_text(encoding="utf-8")
    for needed in ("harness plugin new", "MethodContract", "[project.entry-points.harness]", "hooks.md"):
        assert needed in guide, needed


README = DOCS.parent / "README.md"


def test_the_readme_is_a_front_door():
    size = len(README.read_bytes())
    assert size <= 15_000, f"README.md is {size:,} bytes; move detail into a page under docs/"
    text = README.read_text(encoding="utf-8")
    assert "python -m pytest -q" in text
    for page in sorted(DOCS.glob("*.md")):
        assert f"docs/{page.name}" in text or page.name == "index.md", f"README.md does not point at docs/{page.name}"


def test_the_docs_site_builds_strictly(tmp_path):
    """Every page in the navigation, no broken link or anchor (what .ci/run checks too)."""
    pytest.importorskip("mkdocs")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=DOCS.parent, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-2000:]


def test_docs_link_nothing_outside_the_project_and_tell_no_history_of_their_making():
    """A reader has the project only: no page outside it (the data mirror's folder, which the
    tests read, is a place, not a page), and no account of the sessions that wrote the code."""
    for page in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        outside = [path for path in re.findall(r"\.\./(?:shared|anchors)[\w./-]*", text) if path != "../shared/data"]
        assert outside == [], f"{page.name} names {outside}"
        history = re.findall(r"[^.]*\b(?:lent|session)\b[^.]*", text, flags=re.IGNORECASE)
        assert history == [], f"{page.name}: {history}"
