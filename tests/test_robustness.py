"""`harness run` under interruption: SIGKILL and resume, Ctrl-C, two runs on one folder, a cell
timeout; `harness status`; the progress display."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

import harness.plugins
from harness.cli import cli
from harness.locks import FileLock
from harness.plugins import make_plugin_manager
from harness.progress import Progress
from harness.plan import plan_run
from harness.records import CellRecord
from harness.testing import TINY_DATASET, tiny_run_settings, write_tiny_dataset
from robustness_methods import PLUGIN_MODULE

TESTS_DIR = str(Path(__file__).resolve().parent)
HARNESS = [sys.executable, "-c", "from harness.cli import main; main()"]


@pytest.fixture
def plugin_env(monkeypatch):
    """The test methods for this process, `harness` subprocesses and their workers."""
    monkeypatch.setenv("HARNESS_PLUGINS", PLUGIN_MODULE)
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(harness.plugins, "_default_pm", None)  # rebuilt with the test methods


@pytest.fixture
def run_args(tmp_path, plugin_env):
    """``harness run`` arguments for sleepy cells on the tiny dataset; each fit logs a line."""
    cfg_dir, data_dir = write_tiny_dataset(tmp_path)

    def args(seeds: str, seconds: float, *extra: str) -> list[str]:
        return ["run", "--methods", "sleepy", "--datasets", TINY_DATASET, "--seeds", seeds,
                "--datasets-cfg", str(cfg_dir), "--data-dir", str(data_dir), "--results", str(tmp_path / "results"),
                "--cache-dir", str(tmp_path / "cache"), "--no-report", "--json-progress",
                "--set", f"sleepy.seconds={seconds}", "--set", f"sleepy.log={tmp_path / 'fits.log'}", *extra]

    return args


def _fits(tmp_path: Path) -> list[tuple[str, int]]:
    """(slice, seed) of every fit so far, in order."""
    log = tmp_path / "fits.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [(line.split()[0], int(line.split()[1])) for line in lines]


def _all_records(tmp_path: Path) -> list[dict]:
    """Every record on disk, each of which must be complete JSON."""
    return [json.loads(path.read_text()) for path in (tmp_path / "results" / "cells").glob("*/*/*.json")]


def _records(tmp_path: Path) -> dict[tuple[str, int], dict]:
    """The records of a one-method run by (slice, seed)."""
    return {(record["slice"]["name"], record["seed"]): record for record in _all_records(tmp_path)}


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def _status_rows(output: str) -> dict[tuple[str, str], list[str]]:
    """``harness status`` table rows: (dataset, method name without its @variant) -> the counts."""
    rows = [line.split() for line in output.splitlines() if line.startswith(TINY_DATASET)]
    return {(row[0], row[1].split("@")[0]): row[2:] for row in rows}


def _wait_for_cells(process: subprocess.Popen, n: int) -> None:
    """Read the run's JSON progress until ``n`` cells have finished."""
    finished = 0
    for line in process.stdout:
        if json.loads(line)["event"] == "cell":
            finished += 1
            if finished == n:
                return
    raise AssertionError(f"the run ended after {finished} cells: {process.stderr.read()}")


def test_sigkill_loses_at_most_the_cells_in_flight_and_resume_redoes_none(tmp_path, run_args):
    args = run_args("0,1,2,3", 0.3)  # 12 cells
    killed = subprocess.Popen(HARNESS + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_cells(killed, 3)
    killed.kill()
    killed.wait()
    saved = _records(tmp_path)  # every record on disk parses
    assert 3 <= len(saved) < 12
    fitted_before = len(_fits(tmp_path))
    assert fitted_before - len(saved) <= 1  # the serial run had at most one cell in flight

    resumed = subprocess.run(HARNESS + args, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert _events(resumed.stdout)[0] == {"event": "run_started", "to_run": 12 - len(saved), "skipped": len(saved)}
    refitted = _fits(tmp_path)[fitted_before:]
    assert not set(refitted) & set(saved)  # no finished cell is computed again
    assert len(refitted) == 12 - len(saved)
    assert {r["status"] for r in _records(tmp_path).values()} == {"ok"} and len(_records(tmp_path)) == 12


def test_two_runs_on_one_folder_split_the_cells(tmp_path, run_args):
    args = run_args("0,1,2", 0.5)  # 9 cells
    runs = [subprocess.Popen(HARNESS + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    assert Counter(_fits(tmp_path)) == Counter({cell: 1 for cell in _records(tmp_path)})  # each cell computed once
    assert len(_records(tmp_path)) == 9 and {r["status"] for r in _records(tmp_path).values()} == {"ok"}
    finished = [_events(out)[-1] for out, _ in outputs]
    assert [e["event"] for e in finished] == ["run_finished", "run_finished"]
    assert sum(e["ok"] for e in finished) == 9


@pytest.mark.parametrize("executor", [[], ["--jobs", "2"]], ids=["serial", "process"])
def test_ctrl_c_stops_taking_cells_and_writes_those_in_flight(tmp_path, run_args, executor):
    args = run_args("0,1,2", 1.0, *executor)  # 9 cells of a second
    run = subprocess.Popen(HARNESS + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    _wait_for_cells(run, 1)
    os.killpg(run.pid, signal.SIGINT)  # as a terminal does: to the driver and its workers
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130
    assert "run the same command again to resume" in err
    assert _events(out)[-1]["event"] == "run_finished" and _events(out)[-1]["interrupted"] is True
    saved = _records(tmp_path)
    assert 1 <= len(saved) < 9
    assert sorted(_fits(tmp_path)) == sorted(saved)  # every cell begun was finished and written


def test_cell_timeout_and_status(tmp_path, run_args):
    """A hung method fails its cell at --cell-timeout (serial runs cells in a worker process then);
    `harness status` then lists each cell's state and the errors of the failed ones."""
    args = run_args("0", 0.1, "--slices", "8", "--cell-timeout", "2")
    args[args.index("sleepy")] = "sleepy,explodes,nan_scores,hangs"  # the hung one last: no worker restart
    result = subprocess.run(HARNESS + args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1  # some cells failed
    errors = {r["method"]["name"]: r.get("error") for r in _all_records(tmp_path)}
    assert errors["hangs"].startswith("CellTimeout: the cell ran longer than the cell timeout of 2s")
    assert errors["explodes"] == "RuntimeError: boom"
    assert errors["nan_scores"] == "PredictionError: method 'nan_scores' predicted NaN or infinite values"
    assert errors["sleepy"] is None

    results = ["--results", str(tmp_path / "results")]
    on_disk = CliRunner().invoke(cli, ["status", *results])
    assert on_disk.exit_code == 0, on_disk.output
    rows = _status_rows(on_disk.output)
    assert rows[(TINY_DATASET, "hangs")] == ["0", "1", "0"]  # done, failed, running
    assert rows[(TINY_DATASET, "sleepy")] == ["1", "0", "0"]
    assert f"{TINY_DATASET} explodes slice=8 seed=0: RuntimeError: boom" in on_disk.output

    run_options = [a for a in args if a not in ("run", "--no-report", "--json-progress")]
    run_options[run_options.index("--methods") + 1] = "sleepy,hangs"
    run_options[run_options.index("--seeds") + 1] = "0,1"
    run_options = run_options[:run_options.index("--cell-timeout")]
    planned = CliRunner().invoke(cli, ["status", *run_options])
    assert planned.exit_code == 0, planned.output
    rows = _status_rows(planned.output)
    assert rows[(TINY_DATASET, "hangs")] == ["0", "1", "0", "1"]
    assert rows[(TINY_DATASET, "sleepy")] == ["1", "0", "0", "1"]  # done, failed, running, missing (seed 1)


def test_status_shows_cells_a_live_run_holds(tmp_path, plugin_env):
    settings = tiny_run_settings(tmp_path)
    pm = make_plugin_manager(autoload=False)
    (spec,) = plan_run(pm, settings, "sleepy", [TINY_DATASET], [0], slices=[8]).cells
    with FileLock(spec.lock_path()):  # as a run computing this cell holds it
        result = CliRunner().invoke(cli, ["status", "--results", settings.results_dir])
    assert result.exit_code == 0, result.output
    assert _status_rows(result.output)[(TINY_DATASET, "sleepy")] == ["0", "0", "1"]  # done, failed, running


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Spec:
    dataset, label, slice_name, seed = "ds", "nb", "8", 0


def _finished(status: str, seconds: float, **fields) -> CellRecord:
    return CellRecord(key={}, key_hash="k", status=status, seed=0, method={"name": "nb", "label": "nb", "preset": "default", "params": {}},
                      slice={"name": "8"}, dataset={"name": "ds"}, timings={"total_s": seconds}, **fields)


def test_progress_counts_cells_and_estimates_the_time_left():
    clock, out = _FakeClock(), io.StringIO()
    progress = Progress("human", stream=out, clock=clock)
    progress.run_started(to_run=4, skipped=2)
    clock.now = 10.0
    progress.message(_Spec(), "epoch 1/3")
    progress.cell_finished(_Spec(), _finished("ok", 9.5, metrics={"micro_f1": 0.5, "macro_f1": 0.25}))
    clock.now = 20.0
    progress.cell_finished(_Spec(), _finished("failed", 10.0, error="RuntimeError: boom"))
    lines = out.getvalue().splitlines()
    assert lines == [
        "6 cells: 4 to run, 2 already done",
        "    ds nb slice=8 seed=0: epoch 1/3",
        "[1 done, 0 failed, 3 left, ETA 0:00:30] ds nb slice=8 seed=0 ok  micro 0.5000 macro 0.2500 (9.5s)",
        "[1 done, 1 failed, 2 left, ETA 0:00:20] ds nb slice=8 seed=0 FAILED RuntimeError: boom (10.0s)",
    ]
    quiet = io.StringIO()
    Progress("quiet", stream=quiet).run_started(to_run=4, skipped=0)
    assert quiet.getvalue() == ""
