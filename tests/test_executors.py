"""Executors: local processes and a Dask LocalCluster give the serial results; timeouts,
crashes, resources, thread caps and progress messages from workers."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.executors import DaskExecutor, DataNotOnWorker, ProcessExecutor, SerialExecutor, make_executor
from harness.plugins import make_plugin_manager
from harness.progress import Progress
from harness.cell import run_cell
from harness.datasets import Settings
from harness.driver import run_plan
from harness.plan import plan_run
from click.testing import CliRunner

from harness.cli import cli
from harness.predictions import read_predictions
from harness.records import iter_records, record_path
from harness.trajectories import read_trajectory
from harness.testing import TINY_DATASET, single_method_pm, tiny_run_settings, write_tiny_dataset
from conftest import MIRROR
from robustness_methods import PLUGIN_MODULE, Sleepy

TESTS_DIR = str(Path(__file__).resolve().parent)
NB_CELLS = {"methods": "nb", "datasets": ["github-issues-datasets"], "seeds": [0, 1], "slices": [8, 32, 128]}


@pytest.fixture(scope="module")
def worker_env():
    """Workers (spawned processes, Dask workers) load the test methods through $HARNESS_PLUGINS."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_PLUGINS", PLUGIN_MODULE)
        patch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")])))
        yield


@pytest.fixture
def pm(worker_env):
    return make_plugin_manager(autoload=False)


@pytest.fixture(scope="module")
def dask_client(worker_env):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def _results(settings: Settings) -> dict[tuple, dict]:
    return {(r.method.label, r.slice.name, r.seed): r for r in iter_records(Path(settings.results_dir))}


def _outcomes(settings: Settings) -> dict[str, str]:
    return {r.method.name: (r.error or r.status) for r in iter_records(Path(settings.results_dir))}


def _mirror_settings(tmp_path: Path, mirror_dir: Path, name: str) -> Settings:
    return Settings(results_dir=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), data_dirs=(str(mirror_dir),))


def _run_nb(pm, settings: Settings, executor) -> dict[tuple, dict]:
    """The book's NB on the mirror: every cell's metrics, slice and key."""
    plan = plan_run(pm, settings, NB_CELLS["methods"], NB_CELLS["datasets"], NB_CELLS["seeds"], NB_CELLS["slices"])
    assert run_plan(pm, plan, executor) == {"planned": 6, "skipped": 0, "ok": 6, "failed": 0}
    return {key: (record.metrics, record.slice, record.key_hash) for key, record in _results(settings).items()}


@pytest.fixture(scope="module")
def nb_serial(tmp_path_factory, worker_env):
    if not MIRROR.exists():
        pytest.skip(f"data mirror not found at {MIRROR}")
    folder = tmp_path_factory.mktemp("nb_serial")
    return _run_nb(make_plugin_manager(autoload=False), _mirror_settings(folder, MIRROR.parent, "serial"), SerialExecutor())


def test_make_executor_reads_the_command_line_options():
    assert make_executor().name == "serial"
    assert make_executor(jobs=2).name == "process"
    assert isinstance(make_executor(cell_timeout=5), ProcessExecutor)  # serial cannot kill a hung cell
    assert make_executor(cell_timeout=5).jobs == 1
    assert make_executor(scheduler="tcp://127.0.0.1:8786").name == "dask"
    assert make_executor("dask", jobs=3).workers == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"jobs": 0}, r"--jobs 0: expected a positive number of workers"),
    ({"cell_timeout": -1}, r"--cell-timeout -1: expected a positive number of seconds"),
    ({"executor": "threads"}, r"--executor 'threads': expected one of serial, process, dask"),
    ({"executor": "serial", "jobs": 2}, r"--jobs 2 needs --executor process or dask"),
    ({"executor": "process", "scheduler": "tcp://x:1"}, r"--scheduler needs --executor dask"),
])
def test_make_executor_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_executor(**kwargs)


def test_process_executor_gives_the_serial_results(pm, tmp_path, nb_serial):
    parallel = _run_nb(pm, _mirror_settings(tmp_path, MIRROR.parent, "process"), ProcessExecutor(jobs=2))
    assert parallel == nb_serial


def test_process_executor_fails_bad_cells_and_goes_on(pm, tmp_path):
    """A hang past the timeout, an exception, NaN scores and a dead worker each fail their own
    cell; the workers' progress messages reach the driver; BLAS threads are capped."""
    settings = tiny_run_settings(tmp_path)
    plan = plan_run(pm, settings, "hangs,explodes,nan_scores,dies,sleepy", [TINY_DATASET], [0], slices=[8])
    out = io.StringIO()
    summary = run_plan(pm, plan, ProcessExecutor(jobs=2, cell_timeout=3), Progress("json", stream=out))
    assert summary == {"planned": 5, "skipped": 0, "ok": 1, "failed": 4}
    outcomes = _outcomes(settings)
    assert outcomes["hangs"].startswith("CellTimeout: the cell ran longer than the cell timeout of 3s")
    assert outcomes["explodes"] == "RuntimeError: boom"
    assert outcomes["nan_scores"] == "PredictionError: method 'nan_scores' predicted NaN or infinite values"
    assert outcomes["dies"] == "WorkerDied: the worker process running this cell exited with code 3"
    assert outcomes["sleepy"] == "ok"
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {"event": "message", "dataset": TINY_DATASET, "method": "sleepy", "slice": "8", "seed": 0,
            "text": "sleeping 0.3s"} in events
    (sleepy,) = [r for r in iter_records(Path(settings.results_dir)) if r.method.name == "sleepy"]
    assert sleepy.details["pid"] != os.getpid()
    assert sleepy.details["blas_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)


def test_a_worker_without_the_method_says_why(pm, tmp_path):
    (spec,) = plan_run(pm, tiny_run_settings(tmp_path), "explodes", [TINY_DATASET], [0], slices=[8]).cells
    record = run_cell(spec, pm=single_method_pm(Sleepy)).record  # as a worker whose plugins lack the method
    assert record.status == "failed"
    assert record.error.startswith("LookupError: method 'explodes' is not registered in this process")


def test_dask_cluster_gives_the_serial_results(pm, tmp_path, nb_serial, dask_client):
    on_dask = _run_nb(pm, _mirror_settings(tmp_path, MIRROR.parent, "dask"), DaskExecutor(scheduler=dask_client.scheduler.address))
    assert on_dask == nb_serial


def test_dask_honours_method_resources(pm, tmp_path, dask_client):
    async def offer_token(dask_worker):
        await dask_worker.set_resources(TOKEN=1)

    token_worker = sorted(dask_client.scheduler_info()["workers"])[0]
    dask_client.run(offer_token, workers=[token_worker])
    token_pid = dask_client.run(os.getpid, workers=[token_worker])[token_worker]
    settings = tiny_run_settings(tmp_path)
    plan = plan_run(pm, settings, "needs_token,needs_unicorn", [TINY_DATASET], [0, 1], slices=[8],
                    overrides=["needs_token.seconds=0.1", "needs_unicorn.seconds=0.1"])
    summary = run_plan(pm, plan, DaskExecutor(scheduler=dask_client.scheduler.address))
    assert summary["ok"] == 2 and summary["failed"] == 2
    records = list(iter_records(Path(settings.results_dir)))
    assert {r.details["pid"] for r in records if r.method.name == "needs_token"} == {token_pid}
    assert {r.details["blas_threads"] for r in records if r.method.name == "needs_token"} == {1}
    unicorn_errors = {r.error for r in records if r.method.name == "needs_unicorn"}
    assert len(unicorn_errors) == 1
    assert unicorn_errors.pop().startswith("ResourceError: the method needs {'UNICORN': 1} and no Dask worker offers it")


def test_dask_timeout_restarts_the_hung_worker(pm, tmp_path, dask_client):
    settings = tiny_run_settings(tmp_path)
    plan = plan_run(pm, settings, "hangs,explodes,nan_scores,sleepy", [TINY_DATASET], [0], slices=[8])
    summary = run_plan(pm, plan, DaskExecutor(scheduler=dask_client.scheduler.address, cell_timeout=2))
    assert summary == {"planned": 4, "skipped": 0, "ok": 1, "failed": 3}
    outcomes = _outcomes(settings)
    assert outcomes["hangs"].startswith("CellTimeout: the cell ran longer than the cell timeout of 2s; its Dask worker")
    assert outcomes["hangs"].endswith("was restarted")
    assert outcomes["explodes"] == "RuntimeError: boom"
    assert outcomes["nan_scores"] == "PredictionError: method 'nan_scores' predicted NaN or infinite values"
    assert outcomes["sleepy"] == "ok"
    dask_client.wait_for_workers(2, timeout=60)


# ---------------------------------------------------------------- a worker that cannot see the driver's files

def _why_no_mount_namespace(folder: Path) -> str | None:
    """Why this machine cannot start a process that sees a tmpfs over ``folder`` (None: it can)."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --make-rprivate / && mount -t tmpfs tmpfs {shlex.quote(str(folder))}"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -m with a tmpfs mount is not permitted here ({probe.stderr.strip()})"


@pytest.fixture(scope="module")
def blind_worker(tmp_path_factory, worker_env):
    """A scheduler here and one Dask worker in its own mount namespace, where an empty tmpfs hides
    ``driver_only`` (the results, the cache and a private data folder): as a worker on another
    machine, which sees the dataset configs and shared data but not the driver's folders."""
    distributed = pytest.importorskip("distributed")
    base = tmp_path_factory.mktemp("blind")
    driver_only = base / "driver_only"
    (driver_only / "data").mkdir(parents=True)
    why = _why_no_mount_namespace(driver_only)
    if why:
        pytest.skip(why)
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        command = (f"mount --make-rprivate / && mount -t tmpfs tmpfs {shlex.quote(str(driver_only))} && exec "
                   f"{shlex.quote(sys.executable)} -m distributed.cli.dask_worker {cluster.scheduler_address} "
                   "--nthreads 1 --no-nanny --no-dashboard")
        with open(base / "worker.log", "wb") as log:
            worker = subprocess.Popen(["unshare", "-m", "sh", "-c", command], stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                client.wait_for_workers(1, timeout=60)
            except TimeoutError:
                pytest.fail(f"the worker did not join: {(base / 'worker.log').read_text(errors='replace')[-2000:]}")
            yield client, base, driver_only
        finally:
            worker.terminate()
            worker.wait(timeout=30)


def test_a_worker_that_cannot_see_the_results_folder_sends_records_and_arrays_back(pm, blind_worker):
    client, base, driver_only = blind_worker
    cfg_dir, data_dir = write_tiny_dataset(base / "shared")
    settings = Settings(results_dir=str(driver_only / "results"), cache_dir=str(driver_only / "cache"),
                        data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))
    executor = DaskExecutor(scheduler=client.scheduler.address)
    plan = plan_run(pm, settings, "nb", [TINY_DATASET], [0], slices=[8, 16])
    assert run_plan(pm, plan, executor) == {"planned": 2, "skipped": 0, "ok": 2, "failed": 0}
    (worker_view,) = client.run(os.listdir, str(driver_only)).values()
    assert worker_view == []  # the worker saw none of it: the driver wrote every file
    records = list(iter_records(Path(settings.results_dir)))
    assert len(records) == 2
    for record in records:
        path = record_path(Path(settings.results_dir), TINY_DATASET, "nb", record.slice.name, 0)
        assert read_predictions(path.parent / record.predictions.file, record.predictions.sha256)["test_prediction"].shape[1] == 3
    again = plan_run(pm, settings, "nb", [TINY_DATASET], [0], slices=[8, 16])
    assert again.todo == [] and run_plan(pm, again, executor) == {"planned": 2, "skipped": 2, "ok": 0, "failed": 0}


def test_a_dataset_only_the_driver_can_read_stops_the_run_with_one_line(blind_worker):
    client, base, driver_only = blind_worker
    cfg_dir, data_dir = write_tiny_dataset(base / "private")
    # the config stays where the worker sees it; the data file moves to the driver's own folder
    shutil.move(data_dir / f"{TINY_DATASET}.jsonl", driver_only / "data" / f"{TINY_DATASET}.jsonl")
    result = CliRunner().invoke(cli, [
        "run", "--scheduler", client.scheduler.address, "--methods", "nb", "--datasets", TINY_DATASET,
        "--slices", "8", "--results", str(driver_only / "results-private"), "--cache-dir", str(driver_only / "cache"),
        "--datasets-cfg", str(cfg_dir), "--data-dir", str(driver_only / "data"), "--no-report",
    ])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error")]
    assert line.startswith(f"error: Dask worker {next(iter(client.scheduler_info()['workers']))} cannot read dataset 'tiny'")
    assert "--data-dir" in line and "'url'" in line and "Traceback" not in result.output
    pm = make_plugin_manager(autoload=False)
    settings = Settings(results_dir=str(driver_only / "results-private"), cache_dir=str(driver_only / "cache"),
                        data_dirs=(str(driver_only / "data"),), datasets_cfg_dirs=(str(cfg_dir),))
    plan = plan_run(pm, settings, "nb", [TINY_DATASET], [0], slices=[8])
    with pytest.raises(DataNotOnWorker):
        run_plan(pm, plan, DaskExecutor(scheduler=client.scheduler.address))
    assert list(iter_records(Path(settings.results_dir))) == []  # no failed cell written for it


def _strategy_run(pm, settings: Settings, executor) -> tuple[dict[tuple, tuple], dict[tuple, list]]:
    """nb under three strategies on the tiny dataset: each cell's slice and metrics, and each
    trajectory's picks."""
    plan = plan_run(pm, settings, "nb", [TINY_DATASET], [0], [8, 16, 32], strategies=["uncertainty", "diversity", "hybrid"])
    assert run_plan(pm, plan, executor)["failed"] == 0
    cells = {(r.method.label, r.slice.name, r.seed): (r.slice.index_hash, r.metrics.micro_f1, r.metrics.macro_f1)
             for r in iter_records(Path(settings.results_dir))}
    picks = {}
    for spec in plan.cells:
        if spec.trajectory is not None:
            trajectory = read_trajectory(spec.trajectory, Path(settings.cache_dir))
            picks[(spec.trajectory.strategy, spec.seed)] = [step.picks for step in trajectory.steps]
    return cells, picks


def test_strategies_pick_and_score_alike_serially_in_processes_and_on_dask(pm, tmp_path, dask_client):
    """Workers grow the trajectories under the artifact lock, in whatever order the cells arrive:
    the picks, the slices and the scores are the serial run's."""
    serial = _strategy_run(pm, tiny_run_settings(tmp_path / "serial"), SerialExecutor())
    assert len(serial[0]) == 1 + 3 * 2 and len(serial[1]) == 3
    assert _strategy_run(pm, tiny_run_settings(tmp_path / "process"), ProcessExecutor(jobs=2)) == serial
    dask = DaskExecutor(scheduler=dask_client.scheduler.address)
    assert _strategy_run(pm, tiny_run_settings(tmp_path / "dask"), dask) == serial
