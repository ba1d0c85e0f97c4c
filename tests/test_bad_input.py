"""Issue 19: bad input and faults give one-line errors or honest reports, never silent nonsense."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from harness.store import write_json_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_records_get_the_usual_file_mode(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "cells" / "record.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "cells" / "record.json").stat().st_mode) == mode
    assert json.loads((tmp_path / "cells" / "record.json").read_text()) == {"a": 1}
    assert [p.name for p in (tmp_path / "cells").iterdir()] == ["record.json"]  # no temporary left
