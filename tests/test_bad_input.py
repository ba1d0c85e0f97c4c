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


# ---------------------------------------------------------------- item 5: no path leaves its folder

def _tiny(tmp_path: Path, **changes) -> tuple[Path, Path]:
    """The tiny dataset on disk with its config changed; returns (datasets_cfg dir, data dir)."""
    from harness.testing import TINY_DATASET, write_tiny_dataset

    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    path = cfg_dir / f"{TINY_DATASET}.yaml"
    config = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = config
        for key in parents:
            target = target[key]
        target[last] = value
    path.write_text(json.dumps(config))
    return cfg_dir, data_dir


def _invoke(*args):
    from click.testing import CliRunner

    from harness.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("name", ["..", ".", "", "../up", ".hidden", "a/../../b"])
def test_record_paths_stay_under_cells(tmp_path, name):
    from harness.store import CELLS_DIR, record_path

    results = tmp_path / "results"
    path = record_path(results, name, name, name, 0)
    assert path.resolve().is_relative_to((results / CELLS_DIR).resolve())
    assert len(path.relative_to(results / CELLS_DIR).parts) == 3


def test_a_dataset_named_dot_dot_is_refused(tmp_path):
    cfg_dir, data_dir = _tiny(tmp_path)
    (cfg_dir / "tiny.yaml").rename(cfg_dir / "...yaml")
    results = tmp_path / "deep" / "results"
    result = _invoke("run", "--methods", "nb", "--datasets", "..", "--datasets-cfg", cfg_dir, "--data-dir", data_dir,
                     "--results", results, "--cache-dir", tmp_path / "cache", "--no-report")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "'..' is not a usable dataset name" in result.output
    assert not list((tmp_path / "deep").rglob("*.json"))
    listing = _invoke("ls", "datasets", "--datasets-cfg", cfg_dir)
    assert "INVALID" in listing.output and "not a usable dataset name" in listing.output


@pytest.mark.parametrize("file_name", ["../outside.jsonl", "/etc/outside.jsonl"])
def test_source_file_may_not_leave_the_data_folder(tmp_path, file_name):
    cfg_dir, data_dir = _tiny(tmp_path, **{"source.file": file_name})
    result = _invoke("run", "--methods", "nb", "--datasets", "tiny", "--datasets-cfg", cfg_dir, "--data-dir", data_dir,
                     "--results", tmp_path / "results", "--cache-dir", tmp_path / "cache", "--no-report")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: dataset 'tiny': source file {file_name!r} leaves the data folder {data_dir}; "
        "give a path inside it and point --data-dir at the folder that holds the file"
    )
