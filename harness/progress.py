"""What a run tells the person or script watching it.

One display counts the run's cells done / failed / remaining with an ETA; finished cells and
the inner progress messages of long cells (``FitContext.progress``: embedding, epochs) are
printed above it. Three modes: ``human`` (lines on stderr, plus a live status line when stderr
is a terminal), ``quiet`` (nothing but what the caller prints itself) and ``json`` (one JSON
object per line, for scripts).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Literal, TextIO

if TYPE_CHECKING:
    from harness.records import CellRecord

Mode = Literal["human", "quiet", "json"]
MODES: tuple[str, ...] = ("human", "quiet", "json")


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
        self._started = clock()
        self.total = self.done = self.failed = self.elsewhere = 0

    # ------------------------------------------------------------ counts

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - self.elsewhere

    def eta_seconds(self) -> float | None:
        """Remaining cells times the wall time per finished cell so far (parallelism included)."""
        finished = self.done + self.failed
        if not finished:
            return None
        return (self._clock() - self._started) / finished * self.remaining

    def status_line(self) -> str:
        left = f"{self.remaining} left"
        if self.elsewhere:
            left += f", {self.elsewhere} run elsewhere"
        return f"[{self.done} done, {self.failed} failed, {left}, ETA {_clock(self.eta_seconds())}]"

    # ------------------------------------------------------------ events

    def run_started(self, to_run: int, skipped: int) -> None:
        with self._lock:
            self._started = self._clock()
            self.total = to_run
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
                "eta_s": None if eta is None else round(eta, 1)}

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
