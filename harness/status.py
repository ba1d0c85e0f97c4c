"""Which cells are done, failed, running or missing: what ``harness status`` shows.

With a run plan (the run's --methods/--datasets/--seeds/--slices), every planned cell gets a
state, so cells not yet on disk show as missing. Without one, only what is on disk is known:
the records, and the cells whose lock a live run holds.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.locks import is_locked
from harness.plan import RunPlan
from harness.records import CELLS_DIR, LOCKS_DIR, read_record, record_files

STATES = ("done", "failed", "running", "missing")
_CELL_FILE = re.compile(r"slice-(?P<slice>.+)_seed-(?P<seed>-?\d+)$")


@dataclass(frozen=True)
class CellState:
    dataset: str
    method: str  # the method label (METHOD or METHOD@VARIANT)
    slice: str
    seed: int
    state: str  # one of STATES
    error: str | None = None


def planned_states(plan: RunPlan) -> list[CellState]:
    """The state of every cell of ``plan``; a record with another key (stale) counts as missing."""
    states = []
    for spec in plan.cells:
        record = read_record(spec.path())
        if is_locked(spec.lock_path()):
            state, error = "running", None
        elif record is not None and record.key_hash == spec.key_hash:
            state, error = ("done", None) if record.ok else ("failed", record.error)
        else:
            state, error = "missing", None
        states.append(CellState(spec.dataset, spec.label, spec.slice_name, spec.seed, state, error))
    return states


def disk_states(results_dir: Path) -> list[CellState]:
    """The cells with a record, or with a lock held by a live run, under ``results_dir``."""
    cells: dict[Path, CellState] = {}
    for path in record_files(results_dir):
        record = read_record(path)
        if record is None:
            continue
        cells[path.relative_to(results_dir / CELLS_DIR).with_suffix("")] = CellState(
            record.dataset.name, record.method.label, record.slice.name, record.seed,
            "done" if record.ok else "failed", None if record.ok else record.error,
        )
    for lock in sorted((results_dir / LOCKS_DIR).glob("*/*/*.lock")):
        match = _CELL_FILE.match(lock.stem)
        if match and is_locked(lock):
            relative = lock.relative_to(results_dir / LOCKS_DIR).with_suffix("")
            cells[relative] = CellState(relative.parts[0], relative.parts[1], match["slice"], int(match["seed"]), "running")
    return list(cells.values())


def count_rows(states: list[CellState], columns: tuple[str, ...] = STATES) -> list[list[object]]:
    """One row per (dataset, method): the number of cells in each state of ``columns``."""
    counts: dict[tuple[str, str], Counter] = {}
    for cell in states:
        counts.setdefault((cell.dataset, cell.method), Counter())[cell.state] += 1
    return [[dataset, method, *(counter[c] for c in columns)] for (dataset, method), counter in sorted(counts.items())]
