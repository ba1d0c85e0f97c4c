"""Method plugins as separate packages: `harness plugin new` output and the example package,
installed for real (pip install -e), found through their entry point, run, and their own
tests passing. Each package is uninstalled afterwards unless it was installed before."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.scaffold import plugin_files
from harness.testing import TINY_DATASET, write_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "harness-centroid"
GENERATED = "scaffold_selftest"  # fixed, so a leftover from a killed run is found and removed


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _run(args: list[str], cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def _pip(*args: str) -> None:
    result = _run([sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"])
    assert result.returncode == 0, result.stdout + result.stderr


@contextlib.contextmanager
def installed(path: Path, dist: str) -> Iterator[None]:
    """``pip install -e path`` (offline: no deps, no build isolation) for the duration."""
    if _installed(dist):  # e.g. CI installed it: use it, leave it
        yield
        return
    try:
        _pip("install", "-e", str(path), "--no-deps", "--no-build-isolation")
        yield
    finally:
        if _installed(dist):
            _pip("uninstall", "-y", dist)


def _harness(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-c", "from harness.cli import main; main()", *args], cwd=cwd)


def _pytest(folder: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(folder)], cwd=folder)


def test_plugin_new_writes_a_complete_package(tmp_path):
    result = CliRunner().invoke(cli, ["plugin", "new", "my_method", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    package = tmp_path / "my_method"
    assert sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()) == sorted(
        plugin_files("my_method").values()
    )
    project = tomllib.loads((package / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == "harness-my-method"
    assert project["project"]["entry-points"]["harness"] == {"my_method": "harness_my_method"}
    source = (package / "harness_my_method" / "__init__.py").read_text(encoding="utf-8")
    assert 'name = "my_method"' in source and "class MyMethod(Method)" in source
    assert "$" not in source  # every placeholder filled
    compile(source, "__init__.py", "exec")


@pytest.mark.parametrize(
    ("name", "message"),
    [("My-Method", "expected lowercase letters"), ("nb", "module harness_nb is already installed"),
     ("method", "taken by the harness API")],
)
def test_plugin_new_rejects_unusable_names(tmp_path, name, message):
    result = CliRunner().invoke(cli, ["plugin", "new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output
    assert not any(tmp_path.iterdir())


def test_plugin_new_does_not_overwrite_a_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("keep")
    result = CliRunner().invoke(cli, ["plugin", "new", "mine", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (tmp_path / "mine" / "keep.txt").read_text() == "keep"


def test_generated_plugin_installs_runs_and_passes_its_own_tests(tmp_path):
    dist = f"harness-{GENERATED.replace('_', '-')}"
    if _installed(dist):  # a leftover of an interrupted run
        _pip("uninstall", "-y", dist)
    created = _harness("plugin", "new", GENERATED, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    package = tmp_path / GENERATED
    cfg_dir, data_dir = write_tiny_dataset(tmp_path / "tiny")
    with installed(package, dist):
        listed = _harness("ls", "methods")
        assert GENERATED in listed.stdout, listed.stdout + listed.stderr

        tests = _pytest(package)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert " passed" in tests.stdout and "skipped" not in tests.stdout

        results = tmp_path / "results"
        run = _harness("run", "--methods", GENERATED, "--datasets", TINY_DATASET, "--datasets-cfg", str(cfg_dir),
                       "--data-dir", str(data_dir), "--results", str(results), "--cache-dir", str(tmp_path / "cache"))
        assert run.returncode == 0, run.stderr
        records = [json.loads(p.read_text()) for p in (results / "cells" / TINY_DATASET / GENERATED).glob("*.json")]
        assert len(records) == 3 and all(r["status"] == "ok" for r in records)
        assert {r["method"]["distribution"] for r in records} == {dist}
        assert all("threshold" in r["details"] for r in records)
    assert GENERATED not in _harness("ls", "methods").stdout


def test_example_package_is_found_by_ls_and_all_and_passes_its_tests(tmp_path):
    cfg_dir, data_dir = write_tiny_dataset(tmp_path / "tiny")
    with installed(EXAMPLE, "harness-centroid"):
        listed = _harness("ls", "methods")
        assert "centroid" in listed.stdout, listed.stdout + listed.stderr
        # `--methods all` plans it too
        plan = _run([sys.executable, "-c", (
            "from harness.plugins import get_plugin_manager\n"
            "from harness.datasets import Settings\nfrom harness.plan import plan_run\n"
            f"s = Settings(results_dir={str(tmp_path / 'r')!r}, cache_dir={str(tmp_path / 'c')!r}, "
            f"data_dirs=({str(data_dir)!r},), datasets_cfg_dirs=({str(cfg_dir)!r},))\n"
            f"print(plan_run(get_plugin_manager(), s, 'all', [{TINY_DATASET!r}], [0]).methods)\n"
        )])
        assert plan.returncode == 0, plan.stderr
        assert "'centroid'" in plan.stdout and "'nb'" in plan.stdout

        tests = _pytest(EXAMPLE)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        # the one skip allowed: the contract's test of ``predict``, which a scores-only method lacks
        skips = [line for line in tests.stdout.splitlines() if line.startswith("SKIPPED")]
        assert " passed" in tests.stdout and len(skips) == 1 and "gives scores only" in skips[0], tests.stdout
