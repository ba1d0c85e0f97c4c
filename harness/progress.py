"""What a run tells the person or script watching it.

One display counts the run's cells done / failed / remaining with an ETA; finished cells and
the inner progress messages of long cells (``FitContext.progress``: embedding, epochs) are
printed above it. Three modes: ``human`` (lines on stderr, plus a live status line when stderr
is a terminal), ``quiet`` (nothing but what the caller prints itself) and ``json`` (one JSON
object per line, for scripts).

The ETA is estimated per method: each method's remaining cells times the mean time of its
finished cells, divided by the number of cells seen running at once. Cells of a method that
has not finished one yet are left out of it and counted as "untimed": one global rate would
mix seconds-long Naive Bayes cells with minutes-long fine-tuning cells.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
import threading
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, TextIO

if TYPE_CHECKING:
    from harness.records import CellRecord

Mode = Literal["human", "quiet", "json"]
MODES: tuple[str, ...] = ("human", "quiet", "json")


# Read by libraries when they load, here and in the worker processes (which inherit the environment).
LIBRARY_BARS_OFF = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}
LIBRARY_NOTICES_OFF = {"TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}


def hide_library_bars() -> None:
    """Turn off third-party progress bars (transformers' "Loading weights", hub downloads, tqdm).

    tqdm reads ``TQDM_DISABLE`` once, when it is imported, and plugins or pooch may import it as
    soon as they load: the CLI calls this before loading plugins. A user's own setting wins.
    """
    for name, value in LIBRARY_BARS_OFF.items():
        os.environ.setdefault(name, value)
    # libraries loaded already read their settings at import: switch them directly
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.disable_progress_bar()


def silence_libraries(mode: Mode) -> None:
    """Keep third-party output out of the run's display, in this process and the workers it starts.

    Progress bars are off in every mode (``hide_library_bars``): the run shows its own progress.
    In ``quiet`` and ``json`` mode library info and warnings are off too, so that only errors
    print. Call it before any worker starts (the CLI does).
    """
    hide_library_bars()
    if mode == "human":
        return
    warnings.simplefilter("ignore")
    for name, value in LIBRARY_NOTICES_OFF.items():
        os.environ.setdefault(name, value)  # a user's own setting wins
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.set_verbosity_error()


def cell_name(spec: Any) -> str:
    return f"{spec.dataset} {spec.label} slice={spec.slice_name} seed={spec.seed}"


def _cell_fields(spec: Any) -> dict[str, Any]:
    return {"dataset": spec.dataset, "method": spec.label, "slice": spec.slice_name, "seed": spec.seed}


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts and displays the cells of one run. Thread-safe: executors may report from threads."""

    def __init__(self, mode: Mode = "human", stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode = mode
        self.stream = stream if stream is not None else (sys.stdout if mode == "json" else sys.stderr)
        self.live = mode == "human" and self.stream.isatty()  # redraw a status line in place
        self._clock = clock
        self._lock = threading.Lock()
        self.total = self.done = self.failed = self.elsewhere = 0
        self._eta = EtaEstimator()

    # ------------------------------------------------------------ counts

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - self.elsewhere

    def eta_seconds(self) -> float | None:
        """Seconds the timed remaining cells need (see ``EtaEstimator``); None before any cell finished."""
        return self._eta.seconds_left()

    def status_line(self) -> str:
        left = f"{self.remaining} left"
        if self.elsewhere:
            left += f", {self.elsewhere} run elsewhere"
        eta = _clock(self.eta_seconds())
        untimed = self._eta.untimed()
        if untimed and self.done + self.failed:
            eta += f" + {untimed} untimed"
        return f"[{self.done} done, {self.failed} failed, {left}, ETA {eta}]"

    # ------------------------------------------------------------ events

    def run_started(self, to_run: int, skipped: int, cells: Iterable[Any] = ()) -> None:
        """``cells``: the specs to run, whose methods the ETA counts remaining cells of; without
        them every remaining cell is counted at the mean time of all finished cells."""
        with self._lock:
            self.total = to_run
            self._eta.plan([spec.label for spec in cells], to_run)
            self._emit({"event": "run_started", "to_run": to_run, "skipped": skipped},
                       f"{to_run + skipped} cells: {to_run} to run, {skipped} already done")

    def cell_finished(self, spec: Any, record: CellRecord) -> None:
        with self._lock:
            ok = record.ok and record.metrics is not None
            if ok:
                self.done += 1
                metrics = record.metrics
                outcome = f"ok  micro {metrics.micro_f1:.4f} macro {metrics.macro_f1:.4f}"
            else:
                self.failed += 1
                outcome = f"FAILED {record.error or ''}"
            seconds = record.timings.get("total_s", 0.0)
            self._eta.finished(spec.label, seconds, self._clock())
            event = {"event": "cell", **_cell_fields(spec), "status": record.status, "seconds": round(seconds, 3)}
            if ok:
                event.update(micro_f1=metrics.micro_f1, macro_f1=metrics.macro_f1)
            else:
                event["error"] = record.error
            self._emit(self._with_counts(event), f"{self.status_line()} {cell_name(spec)} {outcome} ({seconds:.1f}s)")

    def cell_elsewhere(self, spec: Any) -> None:
        """The cell is being run by another process (its lock is held), or it finished meanwhile."""
        with self._lock:
            self.elsewhere += 1
            self._eta.dropped(spec.label)
            self._emit(self._with_counts({"event": "cell_elsewhere", **_cell_fields(spec)}),
                       f"{cell_name(spec)}: left to another run (running or just finished there)")

    def message(self, spec: Any, text: str) -> None:
        """A long cell's inner progress, shown indented under the cell it belongs to."""
        with self._lock:
            self._emit({"event": "message", **_cell_fields(spec), "text": text}, f"    {cell_name(spec)}: {text}")

    def run_finished(self, summary: dict[str, Any]) -> None:
        with self._lock:
            if self.mode == "json":
                self._emit(self._with_counts({"event": "run_finished", **summary}), "")
            elif self.live:
                self.stream.write("\r\033[K")  # the caller prints its own summary
                self.stream.flush()

    # ------------------------------------------------------------ output

    def _with_counts(self, event: dict[str, Any]) -> dict[str, Any]:
        eta = self.eta_seconds()
        return {**event, "done": self.done, "failed": self.failed, "remaining": self.remaining,
                "eta_s": None if eta is None else round(eta, 1), "eta_untimed_cells": self._eta.untimed()}

    def _emit(self, event: dict[str, Any], line: str) -> None:
        if self.mode == "json":
            self.stream.write(json.dumps(event) + "\n")
        elif self.mode == "human":
            if self.live:
                self.stream.write("\r\033[K")  # erase the status line, print above it, redraw it
            self.stream.write(line + "\n")
            if self.live:
                self.stream.write(self.status_line())
        self.stream.flush()


class EtaEstimator:
    """Time left from per-method cell times.

    Each method's remaining cells cost the mean ``total_s`` of its finished cells; the sum is
    divided by the concurrency seen so far: the most finished cells whose spans (finish time
    minus their duration) overlapped, i.e. the number of workers, 1 for a serial run.
    """

    _ANY = ""  # the method key when the run's cells were not given: one rate for all

    def __init__(self) -> None:
        self._left: Counter[str] = Counter()
        self._seconds: dict[str, list[float]] = defaultdict(list)
        self._spans: list[tuple[float, float]] = []
        self._overlap: list[int] = []  # per span: how many spans cover its start
        self._per_method = False

    def plan(self, methods: list[str], to_run: int) -> None:
        self._per_method = bool(methods)
        self._left = Counter(methods) if methods else Counter({self._ANY: to_run})

    def _key(self, method: str) -> str:
        return method if self._per_method else self._ANY

    def dropped(self, method: str) -> None:
        """A planned cell that another run computes."""
        key = self._key(method)
        if self._left[key] > 0:
            self._left[key] -= 1

    def finished(self, method: str, seconds: float, now: float) -> None:
        self.dropped(method)
        self._seconds[self._key(method)].append(seconds)
        start = now - seconds
        for i, (other_start, _) in enumerate(self._spans):
            if start <= other_start < now:
                self._overlap[i] += 1
        self._spans.append((start, now))
        self._overlap.append(1 + sum(1 for other_start, other_end in self._spans[:-1] if other_start <= start < other_end))

    def concurrency(self) -> int:
        return max(self._overlap, default=1)

    def untimed(self) -> int:
        """Remaining cells of methods that have not finished a cell yet."""
        return sum(n for method, n in self._left.items() if not self._seconds.get(method))

    def seconds_left(self) -> float | None:
        if not self._spans:
            return None
        work = sum(n * sum(self._seconds[m]) / len(self._seconds[m]) for m, n in self._left.items() if self._seconds.get(m))
        return work / self.concurrency()
