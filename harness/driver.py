"""The driver: runs a plan's cells on an executor, and is the only writer of records and of
the arrays files they name (workers send both back; they need no view of the results folder).

Before a cell starts, the driver takes the cell's lock under ``<results>/.locks`` and looks at
its record again, so two runs on one results folder never compute (or write) the same cell at
the same time. It alone calls the lifecycle hooks (before_run, after_cell, on_cell_error,
after_run), and handles Ctrl-C: the first lets the cells in flight finish, the second stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from harness.cell import CellResult
from harness.executors import Executor, SerialExecutor
from harness.locks import FileLock
from harness.plan import CellSpec, RunPlan, is_done
from harness.plugins import HarnessPluginManager
from harness.predictions import predictions_path, write_predictions_file
from harness.progress import Progress
from harness.records import write_record


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; ``summary`` counts what finished (and was written) before."""

    def __init__(self, summary: dict[str, int]) -> None:
        super().__init__("run interrupted")
        self.summary = summary


class _StopOnCtrlC:
    """First Ctrl-C: take no new cell, let the ones in flight finish. Second Ctrl-C: stop now."""

    def __init__(self, progress: Progress) -> None:
        self.requested = False
        self._progress = progress
        self._previous: Any = None

    def __enter__(self) -> _StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._progress.mode == "human":
            # os.write, not the display: the signal may come while the display holds its lock
            os.write(sys.stderr.fileno(), b"\nstopping: no new cells; waiting for the cells in flight "
                                          b"(Ctrl-C again to abandon them)\n")

    def __exit__(self, *exc_info: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def write_cell(path: Path, result: CellResult) -> None:
    """Write a cell's arrays file, then the record that names it (each atomically): whoever
    finds the record finds its arrays."""
    if result.predictions is not None:
        write_predictions_file(predictions_path(path), result.predictions)
    write_record(path, result.record)


def run_plan(
    pm: HarnessPluginManager,
    plan: RunPlan,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Run the plan's to-do cells on ``executor`` (serial by default) and write their records.

    Returns counts: planned, skipped (done before, or taken by another run meanwhile), ok and
    failed. On Ctrl-C, raises ``RunInterrupted`` once the cells in flight are written.
    """
    executor = executor or SerialExecutor()
    progress = progress or Progress(mode="quiet")
    pm.hook.before_run(plan=plan)
    summary = {"planned": len(plan.cells), "skipped": len(plan.skipped), "ok": 0, "failed": 0}
    claims: dict[Path, FileLock] = {}  # record path -> the lock this run holds on the cell

    def cells_to_start(stop: _StopOnCtrlC) -> Iterator[CellSpec]:
        """The to-do cells, each locked for this run at the moment an executor takes it."""
        for spec in plan.todo:
            if stop.requested:
                return
            lock = FileLock(spec.lock_path())
            if not lock.acquire(blocking=False):  # another run is computing it
                summary["skipped"] += 1
                progress.cell_elsewhere(spec)
                continue
            if is_done(spec, plan.retry_failed):  # another run finished it since planning
                lock.release()
                summary["skipped"] += 1
                progress.cell_elsewhere(spec)
                continue
            claims[spec.path()] = lock
            yield spec

    progress.run_started(len(plan.todo), len(plan.skipped), cells=plan.todo)
    try:
        with _StopOnCtrlC(progress) as stop, contextlib.closing(
            executor.map(cells_to_start(stop), pm, on_message=progress.message)
        ) as finished:
            for spec, result in finished:
                write_cell(spec.path(), result)
                record = result.record
                claims.pop(spec.path()).release()
                summary[record.status] += 1
                progress.cell_finished(spec, record)
                pm.hook.after_cell(record=record)
                if not record.ok:
                    pm.hook.on_cell_error(record=record)
    except KeyboardInterrupt as exc:
        progress.run_finished({**summary, "interrupted": True})
        raise RunInterrupted(summary) from exc
    finally:
        for lock in claims.values():  # cells abandoned in flight
            lock.release()
    if stop.requested:
        progress.run_finished({**summary, "interrupted": True})
        raise RunInterrupted(summary)
    progress.run_finished(summary)
    pm.hook.after_run(summary=summary)
    return summary
