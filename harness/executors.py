"""Executors: where the cells of a run are computed.

An executor has a ``name`` and ``map(specs, pm, on_message)``, which runs ``cell.run_cell`` on
each spec and yields ``(spec, result)`` as cells finish, in any order: a ``CellResult``, the
record and the bytes of its arrays file. An executor that runs cells in this process hands them
``pm``, the caller's plugin manager; worker processes build their own.
``on_message(spec, text)`` receives a cell's inner progress.
``specs`` is read lazily, one cell per free worker: the driver decides at the last moment
whether a cell is still to run (Ctrl-C, another run took it). Records and arrays go back to the
driver, the only writer: a worker never needs to see the results folder. A worker rebuilds the
plugin manager itself (``get_plugin_manager()``).

- ``serial``: in this process, one cell after another.
- ``process``: local worker processes (``spawn``), one cell at a time each.
- ``dask``: a Dask distributed cluster: a LocalCluster started here, or an existing scheduler.
  A worker that cannot read a dataset the driver read stops the run with one error
  (``DataNotOnWorker``), rather than failing every cell of it.

A cell running longer than ``cell_timeout`` seconds fails, and its worker is killed (process)
or restarted (dask): a hung call cannot be interrupted from outside its process. The serial
executor cannot do that, so ``make_executor`` runs cells in one worker process when a timeout
is set. Workers cap BLAS / OpenMP / torch threads so that they do not oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol

from harness.cell import CellResult, failed_result, run_cell
from harness.cores import machine_cores
from harness.errors import HarnessError
from harness.plan import CellSpec
from harness.plugins import HarnessPluginManager

MessageFn = Callable[[CellSpec, str], None]
EXECUTORS = ("serial", "process", "dask")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class Executor(Protocol):
    name: str

    def map(self, specs: Iterable[CellSpec], pm: HarnessPluginManager, on_message: MessageFn | None = None) -> Iterator[tuple[CellSpec, CellResult]]:
        ...


def make_executor(
    executor: str | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    cell_timeout: float | None = None,
) -> Executor:
    """The executor the command-line options ask for.

    ``--scheduler`` implies dask and ``--jobs N`` (N > 1) implies process; serial with a
    ``cell_timeout`` runs its cells in one worker process, which can be killed.
    """
    if executor is not None and executor not in EXECUTORS:
        raise HarnessError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if jobs is not None and jobs < 1:
        raise HarnessError(f"--jobs {jobs}: expected a positive number of workers")
    if cell_timeout is not None and cell_timeout <= 0:
        raise HarnessError(f"--cell-timeout {cell_timeout:g}: expected a positive number of seconds")
    if scheduler and executor not in (None, "dask"):
        raise HarnessError(f"--scheduler needs --executor dask, not --executor {executor}")
    executor = executor or ("dask" if scheduler else "process" if (jobs or 1) > 1 else "serial")
    if executor == "dask":
        return DaskExecutor(workers=jobs, scheduler=scheduler, cell_timeout=cell_timeout)
    if executor == "process" or cell_timeout is not None:
        return ProcessExecutor(jobs=jobs if executor == "process" else 1, cell_timeout=cell_timeout)
    if jobs not in (None, 1):
        raise HarnessError(f"--jobs {jobs} needs --executor process or dask; the serial executor runs one cell at a time")
    return SerialExecutor()


# ---------------------------------------------------------------- threads per worker

def limit_threads(threads: int) -> None:
    """Cap BLAS, OpenMP and torch threads in this process (libraries loaded now and later)."""
    from threadpoolctl import threadpool_limits

    for var in THREAD_ENV_VARS:  # read by libraries when they load
        os.environ[var] = str(threads)
    threadpool_limits(limits=threads)  # BLAS / OpenMP runtimes already loaded (numpy, scikit-learn)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


# ---------------------------------------------------------------- serial

class SerialExecutor:
    """Runs cells one after another in this process."""

    name = "serial"

    def map(self, specs: Iterable[CellSpec], pm: HarnessPluginManager, on_message: MessageFn | None = None) -> Iterator[tuple[CellSpec, CellResult]]:
        for spec in specs:
            yield spec, run_cell(spec, pm=pm, progress=_bind(on_message, spec))


def _bind(on_message: MessageFn | None, spec: CellSpec) -> Callable[[str], None] | None:
    return None if on_message is None else (lambda text: on_message(spec, text))


# ---------------------------------------------------------------- local processes

@contextlib.contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started inside inherit an ignored SIGINT (Python keeps it ignored), so that a
    Ctrl-C in the terminal, sent to the whole process group, reaches only the driver: the driver
    then lets the cells in flight finish instead of losing them with their workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker_main(conn: multiprocessing.connection.Connection, threads: int) -> None:
    """A worker process: receive a spec; send ("started", None), ("message", text)... ("result", result)."""
    limit_threads(threads)
    _exit_when_orphaned()
    send_lock = threading.Lock()  # a method may report progress from its own threads

    def send(message: tuple[str, Any]) -> None:
        with send_lock:
            conn.send(message)

    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):  # the driver has gone
        while (task := conn.recv()) is not None:
            spec = task
            send(("started", None))
            result = run_cell(spec, progress=lambda text: send(("message", str(text))))
            send(("result", result))


def _exit_when_orphaned() -> None:
    """Exit if the parent (the driver, or the forkserver it started) dies, even by SIGKILL, so
    that no orphan keeps computing a lost cell."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="harness-orphan-watch", daemon=True).start()


class _WorkerProcess:
    """One worker process and the cell it is running, if any."""

    def __init__(self, context: Any, threads: int) -> None:
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child_conn, threads), name="harness-worker", daemon=True
        )
        with _children_ignore_ctrl_c():
            self.process.start()
        child_conn.close()
        self.spec: CellSpec | None = None
        self.sent = 0.0
        self.started: float | None = None  # when the worker began the cell: its start-up does not count

    def start(self, spec: CellSpec) -> None:
        self.spec, self.sent, self.started = spec, time.monotonic(), None
        with contextlib.suppress(OSError):  # a worker that died at start-up is reported by collect()
            self.conn.send(spec)

    def elapsed(self) -> float:
        return time.monotonic() - (self.started or self.sent)

    def timed_out(self, limit: float | None) -> bool:
        return limit is not None and self.started is not None and self.elapsed() > limit

    def collect(self, on_message: MessageFn | None) -> CellResult | None:
        """The cell's result once it is back (or a failed one if the worker died), else None."""
        assert self.spec is not None
        with contextlib.suppress(EOFError, OSError):  # a worker that died mid-message
            while self.conn.poll():
                kind, payload = self.conn.recv()
                if kind == "result":
                    return payload
                if kind == "started":
                    self.started = time.monotonic()
                elif on_message is not None:
                    on_message(self.spec, payload)
        if not self.process.is_alive():
            return failed_result(
                self.spec, f"WorkerDied: the worker process running this cell exited with code {self.process.exitcode}",
                self.elapsed(),
            )
        return None

    def stop(self) -> None:
        """End the process: politely when idle, by force when it is running an abandoned cell."""
        if self.spec is None and self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class ProcessExecutor:
    """Runs cells in ``jobs`` local worker processes, one cell at a time each.

    A small pool of its own rather than concurrent.futures.ProcessPoolExecutor: a timed-out
    cell's worker must be killed alone, and ProcessPoolExecutor breaks (failing every cell in
    flight) when one of its workers dies.
    """

    name = "process"

    def __init__(self, jobs: int | None = None, cell_timeout: float | None = None, start_method: str = "spawn") -> None:
        self.jobs = jobs or machine_cores()
        self.cell_timeout = cell_timeout
        self.start_method = start_method  # "spawn" or "forkserver": no forked copies of driver threads

    def map(self, specs: Iterable[CellSpec], pm: HarnessPluginManager, on_message: MessageFn | None = None) -> Iterator[tuple[CellSpec, CellResult]]:
        context = multiprocessing.get_context(self.start_method)
        threads = max(1, machine_cores() // self.jobs)
        pending, idle, busy = iter(specs), [], []
        more = True
        try:
            while True:
                while more and len(busy) < self.jobs:
                    spec = next(pending, None)
                    if spec is None:
                        more = False
                        break
                    worker = idle.pop() if idle else _WorkerProcess(context, threads)
                    worker.start(spec)
                    busy.append(worker)
                if not busy:
                    return
                multiprocessing.connection.wait(
                    [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=self._wait_for(busy)
                )
                for worker in list(busy):
                    result = worker.collect(on_message)
                    if result is None and worker.timed_out(self.cell_timeout):
                        worker.process.kill()
                        worker.process.join()
                        result = failed_result(worker.spec, _timeout_error(self.cell_timeout, "its worker process was killed"), worker.elapsed())
                    if result is None:
                        continue
                    busy.remove(worker)
                    spec, worker.spec = worker.spec, None
                    if worker.process.is_alive():
                        idle.append(worker)
                    else:
                        worker.stop()
                    yield spec, result
        finally:
            for worker in idle + busy:
                worker.stop()

    def _wait_for(self, busy: list[_WorkerProcess]) -> float | None:
        """Seconds until the next cell times out (None: wait for a worker, however long)."""
        started = [w for w in busy if w.started is not None]
        if self.cell_timeout is None or not started:
            return None
        return max(0.05, min(self.cell_timeout - w.elapsed() for w in started) + 0.05)


def _timeout_error(seconds: float, action: str) -> str:
    return f"CellTimeout: the cell ran longer than the cell timeout of {seconds:g}s; {action}"


# ---------------------------------------------------------------- Dask distributed

# For the LocalCluster the harness starts: Dask's statistical profiler (every 10 ms) and its
# monitors (event loop tick, system and memory) take a few % of every CPU-bound cell on a small
# machine, for a dashboard nobody looks at here; cells last seconds to hours, so slower is fine.
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}

class DataNotOnWorker(HarnessError):
    """A Dask worker cannot read a dataset that the driver read (its file is on the driver only)."""


def _run_on_dask_worker(spec: CellSpec, topic: str, cell_id: int) -> CellResult:
    """The task a Dask worker runs: tells the driver it started, forwards progress messages."""
    from distributed import get_worker

    worker = get_worker()
    _limit_dask_worker_threads(worker.state.nthreads)
    worker.log_event(topic, {"cell": cell_id, "kind": "start", "worker": worker.address})
    _check_dataset_readable(spec, worker.address)
    return run_cell(spec, progress=lambda text: worker.log_event(topic, {"cell": cell_id, "kind": "message", "text": str(text)}))


def _check_dataset_readable(spec: CellSpec, address: str) -> None:
    """Load the cell's dataset here (memoised: run_cell reuses it); a worker that cannot raises
    DataNotOnWorker, which stops the run with one line instead of failing every cell."""
    from harness.config import ConfigError
    from harness.datasets import load_dataset
    from harness.plugins import get_plugin_manager
    from harness.sources import DataError

    try:
        load_dataset(spec.dataset, spec.settings, get_plugin_manager().registry.readers)
    except (ConfigError, DataError) as exc:
        raise DataNotOnWorker(
            f"Dask worker {address} cannot read dataset {spec.dataset!r}, which the driver read ({exc}); "
            "give every worker the file at the same path and pass its folder with --data-dir, "
            "or give the config a 'url' the workers can download"
        ) from None


@functools.lru_cache(maxsize=1)
def _limit_dask_worker_threads(nthreads: int) -> None:
    """Once per worker process: OMP_NUM_THREADS threads (Dask's nannies set 1), else cores per worker thread."""
    limit_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, machine_cores() // nthreads)))


@dataclass
class _DaskCell:
    future: Any
    spec: CellSpec
    submitted: float
    started: float | None = None  # when a worker began it (cells may queue for resources)
    worker: str | None = None

    def elapsed(self) -> float:
        return time.monotonic() - (self.started or self.submitted)


class DaskExecutor:
    """Runs cells on a Dask cluster: ``client.submit`` one cell per free worker thread.

    Without ``scheduler`` it starts a LocalCluster of ``workers`` processes with one thread each.
    A cell asks for its method's ``resources``; one that no worker offers fails at once, instead
    of waiting forever.
    """

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None, cell_timeout: float | None = None) -> None:
        self.workers = workers or machine_cores()
        self.scheduler = scheduler
        self.cell_timeout = cell_timeout

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise HarnessError("--executor dask needs Dask distributed: pip install 'fewlabels-harness[dask]'") from exc
        if self.scheduler:
            with Client(self.scheduler) as client:
                yield client
            return
        with _children_ignore_ctrl_c(), dask.config.set(LOCAL_CLUSTER_CONFIG):
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, Client(cluster) as client:
            yield client

    def map(self, specs: Iterable[CellSpec], pm: HarnessPluginManager, on_message: MessageFn | None = None) -> Iterator[tuple[CellSpec, CellResult]]:
        with self.client() as client:
            topic, events = f"harness-{uuid.uuid4().hex}", queue.Queue()
            client.subscribe_topic(topic, events.put)
            running: dict[int, _DaskCell] = {}
            pending, ids = iter(specs), itertools.count()
            more, capacity = True, 1
            try:
                while True:
                    if more and len(running) < capacity:  # a free slot: how many worker threads are there now?
                        capacity = max(1, sum(client.nthreads().values()))
                    while more and len(running) < capacity:
                        spec = next(pending, None)
                        if spec is None:
                            more = False
                            break
                        if spec.resources and not _offered(client, spec.resources):
                            yield spec, failed_result(spec, _no_worker_error(spec.resources), 0.0)
                            continue
                        cell_id = next(ids)
                        future = client.submit(_run_on_dask_worker, spec, topic, cell_id,
                                               resources=spec.resources or None, pure=False)
                        running[cell_id] = _DaskCell(future, spec, time.monotonic())
                        future.add_done_callback(lambda _, cell_id=cell_id: events.put((None, {"cell": cell_id, "kind": "done"})))
                    if not running:
                        return
                    self._read_events(events, running, on_message, wait=1.0 if self.cell_timeout is None else 0.2)
                    for cell_id, cell in list(running.items()):
                        if cell.future.done():
                            del running[cell_id]
                            yield cell.spec, _result(cell)
                        elif self.cell_timeout is not None and cell.started is not None and cell.elapsed() > self.cell_timeout:
                            del running[cell_id]
                            yield cell.spec, failed_result(cell.spec, self._abandon(client, cell), cell.elapsed())
            finally:
                client.cancel([cell.future for cell in running.values()])

    @staticmethod
    def _read_events(events: queue.Queue, running: dict[int, _DaskCell], on_message: MessageFn | None, wait: float) -> None:
        """Start, progress and done events (a done one only wakes the loop); waits up to ``wait`` s for one."""
        try:
            batch = [events.get(timeout=wait)]
        except queue.Empty:
            return
        while True:
            try:
                batch.append(events.get_nowait())
            except queue.Empty:
                break
        for _timestamp, event in batch:
            cell = running.get(event["cell"])
            if cell is None:
                continue
            if event["kind"] == "start":
                cell.started, cell.worker = time.monotonic(), event["worker"]
            elif event["kind"] == "message" and on_message is not None:
                on_message(cell.spec, event["text"])

    def _abandon(self, client: Any, cell: _DaskCell) -> str:
        """Cancel a timed-out cell and restart its worker (a running Python call cannot be stopped)."""
        client.cancel(cell.future)
        try:
            client.restart_workers([cell.worker])
        except Exception as exc:  # e.g. a worker without a nanny cannot be restarted
            return _timeout_error(self.cell_timeout, f"its worker {cell.worker} could not be restarted and may still run it ({exc})")
        return _timeout_error(self.cell_timeout, f"its Dask worker {cell.worker} was restarted")


def _result(cell: _DaskCell) -> CellResult:
    try:
        return cell.future.result()
    except DataNotOnWorker:  # every cell of the dataset would fail the same way: stop the run
        raise
    except Exception as exc:  # the task itself failed: its worker died (KilledWorker), was cancelled...
        return failed_result(cell.spec, f"{type(exc).__name__}: {exc}", cell.elapsed())


def _offered(client: Any, resources: dict[str, float]) -> bool:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return any(all(w.get("resources", {}).get(name, 0) >= amount for name, amount in resources.items()) for w in workers)


def _no_worker_error(resources: dict[str, float]) -> str:
    flags = ",".join(f"{name}={amount:g}" for name, amount in resources.items())
    return (f"ResourceError: the method needs {resources} and no Dask worker offers it; "
            f"start workers with `dask worker SCHEDULER --resources {flags}` and pass --scheduler SCHEDULER")
