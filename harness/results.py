"""A results folder loaded once: every cell record file read one time, for every command that
reports from it (``harness report``, ``harness publish``, the ensembles they refresh or check).

What comes after works on these loaded cells and never reads a record again: the ensembles
(harness/ensembles.py), the leaderboard (harness/report.py), the summary (harness/summary.py),
then the files rendered from them (harness/rebuild.py) and the site (harness/publish.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.records import CellRecord, decode_record, record_files


@dataclass(frozen=True)
class StoredCell:
    """A valid record file of a results folder: where it is, its bytes as read (a site copies
    them as they are) and the record they hold."""

    path: Path
    record: CellRecord
    data: bytes


def load_results(results_dir: Path) -> list[StoredCell]:
    """The valid records under ``results_dir``, in a stable order; each file is read once, and
    one that is not a valid record is warned about (``InvalidRecordWarning``) and left out."""
    cells = []
    for path in record_files(results_dir):
        data = path.read_bytes()
        if (record := decode_record(path, data)) is not None:
            cells.append(StoredCell(path, record, data))
    return cells
