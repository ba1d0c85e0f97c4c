"""The published run under results/ can be rebuilt from a clone: its records and arrays are
committed within a size budget, and `harness report` rewrites every tracked report and figure
byte for byte and leaves every record and array as it is (checked on a tiny run made here, and
on the committed records)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.driver import run_plan
from harness.plan import plan_run
from harness.plugins import make_plugin_manager
from harness.records import CELLS_DIR, iter_records
from harness.datasets import Settings
from harness.report import rule_suffix
from harness.rules import RULES
from harness.testing import TINY_DATASET, tiny_run_settings
from conftest import MIRROR

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
BUDGET_BYTES = 20_000_000  # the book protocol run plus the query-strategy comparison
REBUILT = (".md", ".csv")  # the tracked text reports


def _tracked(folder: Path) -> list[Path]:
    """The files git tracks under ``folder`` (relative to it); skips outside a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", str(folder)], cwd=REPO, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no tracked files to check")
    return [(REPO / name).relative_to(folder) for name in listed.stdout.decode().split("\0") if name]


def _rules_of(names: list[Path]) -> list[str]:
    """The decision rules whose reports are among ``names`` (leaderboard.md: own; leaderboard-per_tag.md: per_tag)."""
    return [rule for rule in RULES if Path(f"leaderboard{rule_suffix(rule)}.md") in names]


def _report(results: Path, rules: list[str]) -> None:
    for rule in rules:
        result = CliRunner().invoke(cli, ["report", "--results", str(results), "--rule", rule])
        assert result.exit_code == 0, result.output


def _differing(first: Path, second: Path, names: list[Path]) -> list[str]:
    return [str(name) for name in names if (first / name).read_bytes() != (second / name).read_bytes()]


def test_tracked_results_stay_within_the_size_budget():
    total = sum((RESULTS / name).stat().st_size for name in _tracked(RESULTS))
    assert total <= BUDGET_BYTES, f"tracked files under results/ take {total:,} bytes; the budget is {BUDGET_BYTES:,}"


def test_a_report_rebuilds_itself_byte_for_byte_elsewhere(tmp_path):
    """A tiny run's reports, rebuilt from a copy of its records in another folder, are the same
    bytes: no date, no path of the machine, stable order and number formats."""
    settings = tiny_run_settings(tmp_path / "run")
    pm = make_plugin_manager(autoload=False)
    assert run_plan(pm, plan_run(pm, settings, ["nb"], [TINY_DATASET], [0, 1]))["failed"] == 0
    first = Path(settings.results_dir)
    _report(first, ["own", "per_tag"])
    second = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first, second)
    for report in second.glob("*.*"):
        if report.is_file():
            report.unlink()
    shutil.rmtree(second / "figures")
    _report(second, ["own", "per_tag"])
    written = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file() and CELLS_DIR not in p.parts
                     and ".locks" not in p.parts)
    assert {p.suffix for p in written} >= {".md", ".csv", ".html", ".tex", ".png", ".svg"}
    assert written == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file() and CELLS_DIR not in p.parts
                             and ".locks" not in p.parts)
    assert _differing(first, second, written) == []
    for name in written:
        if name.suffix in (*REBUILT, ".html", ".tex"):
            text = (first / name).read_text(encoding="utf-8")
            assert str(tmp_path) not in text and "finished_at" not in text


def test_the_published_reports_rebuild_byte_for_byte_and_publish(tmp_path):
    tracked = _tracked(RESULTS)
    if not (RESULTS / CELLS_DIR).is_dir():
        pytest.skip("results/cells is absent: the published run's cell records are not committed yet, "
                    "so its reports cannot be rebuilt here")
    copy = tmp_path / "results"
    for name in tracked:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RESULTS / name, copy / name)
    reports = [name for name in tracked if CELLS_DIR not in name.parts]  # reports and figures
    assert {name.suffix for name in reports} >= {*REBUILT, ".png"}
    for name in reports:
        (copy / name).unlink()
    _report(copy, _rules_of(tracked))
    # every tracked file: the reports and figures written again, the records and arrays
    # (the ensemble's derived cells included) left as they are
    assert _differing(RESULTS, copy, tracked) == []
    site = CliRunner().invoke(cli, ["publish", "--results", str(copy), "--out", str(tmp_path / "site")])
    assert site.exit_code == 0, site.output
    assert (tmp_path / "site" / "index.html").is_file()


def test_published_cells_keep_their_keys_and_only_self_train_adds_its_dependencies(tmp_path):
    """Planning the published run again gives every method that wraps none (nb, setfit,
    finetune...) the key its published record holds, byte for byte, so those records stay
    done; self_train's key now adds its base's version and parameters, and only that."""
    if not (RESULTS / CELLS_DIR).is_dir() or not MIRROR.exists():
        pytest.skip("needs the published records and the data mirror")
    published = {(r.method.label, r.slice.name, r.seed): r for r in iter_records(RESULTS)
                 if r.derived is None and r.method.strategy in (None, "random")}  # the query strategies' cells: test_strategies
    pm = make_plugin_manager(autoload=False)
    settings = Settings(results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"),
                        data_dirs=(str(MIRROR.parent),))
    methods = sorted({label for label, _, _ in published})
    assert {"nb", "setfit", "finetune", "self_train"} <= set(methods)
    planned = {(c.label, c.slice_name, c.seed): c
               for c in plan_run(pm, settings, methods, ["github-issues-datasets"], sorted({k[2] for k in published})).cells}
    assert set(published) <= set(planned)
    for cell, record in published.items():
        spec = planned[cell]
        if record.method.name == "self_train":
            assert {k: v for k, v in spec.key.items() if k != "dependencies"} == record.key
            assert spec.key["dependencies"]["base"]["method"] == record.method.params["base"]
        else:
            assert (spec.key, spec.key_hash) == (record.key, record.key_hash), cell
