"""One loader for every report (harness/results.py): ``harness report`` and ``harness publish``
read each record file once, whatever they then compute and render from it."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.driver import run_plan
from harness.plan import plan_run
from harness.plugins import make_plugin_manager
from harness.records import CELLS_DIR, record_files
from harness.testing import TINY_DATASET, tiny_run_settings

_OPEN: list[Counter] = []  # the counters of the record_reads blocks now open


def _reading(mode: str | None, flags: int) -> bool:
    if mode is not None:  # io.open
        return not any(letter in mode for letter in "wax+")
    return flags & os.O_ACCMODE == os.O_RDONLY  # os.open


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPEN and isinstance(args[0], (str, os.PathLike)):
        path = Path(os.fsdecode(args[0]))
        if path.suffix == ".json" and CELLS_DIR in path.parts and _reading(args[1], args[2]):
            _OPEN[-1][path] += 1


sys.addaudithook(_audit)  # for the rest of the process: it does nothing outside record_reads


@contextmanager
def record_reads() -> Iterator[Counter]:
    """Counts, per record file, the times it is opened for reading inside the block."""
    counts: Counter = Counter()
    _OPEN.append(counts)
    try:
        yield counts
    finally:
        _OPEN.remove(counts)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """nb and the variant nb@smooth on the tiny dataset, seeds 0 and 1."""
    settings = tiny_run_settings(tmp_path_factory.mktemp("reads"))
    pm = make_plugin_manager(autoload=False)
    for overrides, label in (([], None), (["nb.alpha=5"], "smooth")):
        plan = plan_run(pm, settings, ["nb"], [TINY_DATASET], [0, 1], overrides=overrides, label=label)
        assert run_plan(pm, plan)["failed"] == 0
    return Path(settings.results_dir)


def test_the_counter_counts_reads_of_records_only(results):
    first = record_files(results)[0]
    with record_reads() as reads:
        first.read_bytes()
        first.read_text()
        (results / "leaderboard.csv").write_text("not a record")
    assert reads == Counter({first: 2})


def test_report_and_publish_read_each_record_once(results, tmp_path):
    runner = CliRunner()
    with record_reads() as reads:
        built = runner.invoke(cli, ["report", "--results", str(results), "--ensemble", "pair=nb,nb@smooth"])
    assert built.exit_code == 0, built.output
    derived = set((results / CELLS_DIR / TINY_DATASET / "ensemble-pair").glob("*.json"))
    assert len(derived) == 6  # written by this report, and never read back
    assert reads == Counter({path: 1 for path in record_files(results) if path not in derived})
    for args in (["report"], ["report", "--rule", "per_tag"], ["publish", "--out", str(tmp_path / "site")]):
        with record_reads() as reads:
            result = runner.invoke(cli, [*args, "--results", str(results)])
        assert result.exit_code == 0, result.output
        assert reads == Counter({path: 1 for path in record_files(results)}), args
    assert (tmp_path / "site" / "index.html").is_file()
