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
    from harness.records import CELLS_DIR, record_path

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


# ---------------------------------------------------------------- items 7 and 8: CLI lists and config values

@pytest.fixture
def tiny_run(tmp_path):
    """``harness run`` of nb on the tiny dataset with extra arguments; returns the click result."""
    cfg_dir, data_dir = _tiny(tmp_path)

    def run(*extra):
        return _invoke("run", "--methods", "nb", "--datasets", "tiny", "--datasets-cfg", cfg_dir, "--data-dir", data_dir,
                       "--results", tmp_path / "results", "--cache-dir", tmp_path / "cache", "--no-report", *extra)

    return run


@pytest.mark.parametrize("args, message", [
    (["--seeds", "a"], "error: --seeds 'a': 'a' is not an integer; expected comma-separated integers, e.g. 0,1,2"),
    (["--seeds", ","], "error: --seeds ',': no value given; expected comma-separated integers, e.g. 0,1,2"),
    (["--seeds", "0,0"], "error: --seeds '0,0': 0 given twice; expected comma-separated integers, e.g. 0,1,2"),
    (["--seeds", "0,00"], "error: --seeds '0,00': a seed is given twice; expected comma-separated integers, e.g. 0,1,2"),
    (["--slices", "0"], "error: --slices '0': '0' is not a slice size; expected positive integers or 'all', e.g. 8,16,all"),
    (["--slices", "x"], "error: --slices 'x': 'x' is not a slice size; expected positive integers or 'all', e.g. 8,16,all"),
    (["--slices", "-3"], "error: --slices '-3': '-3' is not a slice size; expected positive integers or 'all', e.g. 8,16,all"),
    (["--slices", ""], "error: --slices '': no value given; expected positive integers or 'all', e.g. 8,16,all"),
    (["--methods", "nb,nb"], "error: --methods 'nb,nb': nb given twice; expected comma-separated method names, or 'all'"),
    (["--datasets", "tiny,tiny"], "error: --datasets 'tiny,tiny': tiny given twice; expected comma-separated dataset names"),
    (["--cell-timeout", "inf"], "error: --cell-timeout inf: expected a positive, finite number of seconds"),
    (["--cell-timeout", "nan"], "error: --cell-timeout nan: expected a positive, finite number of seconds"),
    (["--cell-timeout", "0"], "error: --cell-timeout 0.0: expected a positive, finite number of seconds"),
    (["--preset", "bok"], "error: --preset: unknown preset 'bok'; did you mean 'book'? (known: book, default, mpnet)"),
])
def test_run_list_options_refuse_nonsense_in_one_line(tiny_run, tmp_path, args, message):
    result = tiny_run(*args)
    assert result.exit_code == 2, result.output
    assert result.output == message + "\n"
    assert not (tmp_path / "results").exists()  # nothing ran


def test_status_checks_its_lists_too(tmp_path):
    cfg_dir, data_dir = _tiny(tmp_path)
    result = _invoke("status", "--methods", "nb", "--datasets", "tiny", "--seeds", "1,x", "--datasets-cfg", cfg_dir,
                     "--data-dir", data_dir, "--results", tmp_path / "results")
    assert result.exit_code == 2 and result.output == (
        "error: --seeds '1,x': 'x' is not an integer; expected comma-separated integers, e.g. 0,1,2\n")


@pytest.mark.parametrize("slices, message", [
    ([0], "slice size 0 is neither a positive integer nor 'all'"),
    ([-8], "slice size -8 is neither a positive integer nor 'all'"),
    ([True], "slice size True is neither a positive integer nor 'all'"),
    ([8, 8], "slice size 8 is listed twice"),
    ([], "expected a non-empty list of slice sizes"),
])
def test_config_slices_refuse_nonsense(tmp_path, slices, message):
    cfg_dir, data_dir = _tiny(tmp_path, slices=slices)
    result = _invoke("run", "--methods", "nb", "--datasets", "tiny", "--datasets-cfg", cfg_dir, "--data-dir", data_dir,
                     "--results", tmp_path / "results", "--cache-dir", tmp_path / "cache", "--no-report")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {cfg_dir / 'tiny.yaml'}: field 'slices': ") and message in result.output
    assert result.output.count("\n") == 1


@pytest.mark.parametrize("template, message", [
    ("{}", "template fields need a row field's name"),
    ("{0}", "template fields need a row field's name"),
    ("{title", "not a valid template (expected '}' before end of string)"),
    ("{title!z}", "template field 'title' has conversion !z; only !r, !s and !a exist"),
    ("{title:>x}", "template cannot be rendered: Unknown format code 'x'"),
])
def test_broken_templates_are_found_when_configs_load(tmp_path, template, message):
    cfg_dir, _ = _tiny(tmp_path, text=template)
    listing = _invoke("ls", "datasets", "--datasets-cfg", cfg_dir)
    row = next(line for line in listing.output.splitlines() if line.startswith("tiny "))
    assert "INVALID" in row and "field 'text'" in row and message in row


def test_good_templates_still_load(tmp_path):
    from harness.config import load_config_file

    cfg_dir, _ = _tiny(tmp_path, text="{{literal}} {title!r}: {body:>3}")
    assert load_config_file(cfg_dir / "tiny.yaml").text == "{{literal}} {title!r}: {body:>3}"


# ---------------------------------------------------------------- item 10: silent oddities

def test_a_name_field_other_than_the_file_name_is_warned_about(tmp_path):
    from harness.config import ConfigWarning, load_config_file

    cfg_dir, _ = _tiny(tmp_path, name="other")
    with pytest.warns(ConfigWarning, match="field 'name' is 'other' but a dataset is named by its file: this one is 'tiny'"):
        cfg = load_config_file(cfg_dir / "tiny.yaml")
    assert cfg.name == "tiny"


def _frame_with_labels(labels: list) -> tuple:
    import pandas as pd

    from harness.config import DatasetConfig
    from harness.data import build_frame

    cfg = DatasetConfig.model_validate({"name": "t", "source": {"file": "t.jsonl"}, "text": "{title}", "labels": {"field": "labels"}})
    raw = pd.DataFrame({"title": [f"issue {i}" for i in range(len(labels))], "labels": labels})
    return build_frame(cfg, raw, "t.jsonl")


def test_integer_labels_are_used_with_a_warning():
    from harness.data import DataWarning

    with pytest.warns(DataWarning, match=r"t.jsonl: label field 'labels' holds integers \(first in row 2\)"):
        _, tags = _frame_with_labels([["bug"], [3, "bug"], [{"name": 4}]])
    assert tags == ["3", "4", "bug"]


@pytest.mark.parametrize("labels, shown", [
    ([["bug"], [{"name": {"x": 1}}]], "label {'x': 1} in 'labels' is a dict"),
    ([["bug"], [1.5]], "label 1.5 in 'labels' is a float"),
    ([["bug"], [True]], "label True in 'labels' is a bool"),
    ([["bug"], [["a"]]], "label ['a'] in 'labels' is a list"),
    ([["bug"], [None]], "label None in 'labels' is a NoneType"),
])
def test_other_label_values_are_refused_naming_the_row(labels, shown):
    from harness.sources import DataError

    with pytest.raises(DataError) as raised:
        _frame_with_labels(labels)
    assert str(raised.value) == (f"t.jsonl: row 2: {shown}; expected a label name: a string (or an integer id), "
                                 "or an object with a 'name'")


# ---------------------------------------------------------------- item 1: never average different data

def _nb_run(cfg_dir, data_dir, results, cache, seeds):
    return _invoke("run", "--methods", "nb", "--datasets", "tiny", "--seeds", seeds, "--slices", "8",
                   "--datasets-cfg", cfg_dir, "--data-dir", data_dir, "--results", results, "--cache-dir", cache, "--no-report")


@pytest.fixture
def mixed_results(tmp_path):
    """nb on tiny with seeds 0,1, then the data file changes and seed 0 runs again."""
    cfg_dir, data_dir = _tiny(tmp_path)
    results = tmp_path / "results"
    assert _nb_run(cfg_dir, data_dir, results, tmp_path / "cache", "0,1").exit_code == 0
    data = data_dir / "tiny.jsonl"
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:100]))
    from harness.datasets import load_dataset, train_slices

    load_dataset.cache_clear()  # the CLI runs in this process: forget the old data
    train_slices.cache_clear()
    second = _nb_run(cfg_dir, data_dir, results, tmp_path / "cache", "0")
    assert second.exit_code == 0
    assert "warning: 1 cell record(s) on disk were computed with another cell key" in second.output
    return results


def test_report_never_averages_records_of_different_data(mixed_results):
    import pandas as pd

    from harness.rebuild import rebuild_reports
    from harness.report import MixedDataWarning

    with pytest.warns(MixedDataWarning, match=r"dataset 'tiny': cell records come from 2 versions of its config or data"):
        rebuild_reports(mixed_results)
    table = pd.read_csv(mixed_results / "leaderboard.csv")
    assert len(table) == 2 and table["seeds"].tolist() == [1, 1]
    assert all(name.startswith("tiny [config ") and ", data " in name for name in table["dataset"])
    assert table["dataset"].nunique() == 2
    assert len(list((mixed_results / "figures").glob("tiny*.png"))) == 2  # one per data version


def test_publish_shows_each_data_version_apart(mixed_results, tmp_path):
    result = _invoke("publish", "--results", mixed_results, "--out", tmp_path / "site")
    assert result.exit_code == 0, result.output
    assert "warning: dataset 'tiny': cell records come from 2 versions" in result.output
    pages = sorted(p.name for p in (tmp_path / "site").glob("tiny*.html"))
    assert len(pages) == 2


# ---------------------------------------------------------------- item 4: a failing publish keeps the old site

def test_a_failing_publish_leaves_the_previous_site(tmp_path, monkeypatch):
    import harness.publish

    cfg_dir, data_dir = _tiny(tmp_path)
    results = tmp_path / "results"
    assert _nb_run(cfg_dir, data_dir, results, tmp_path / "cache", "0").exit_code == 0
    site = tmp_path / "site"
    assert _invoke("publish", "--results", results, "--out", site).exit_code == 0
    before = sorted(p.relative_to(site) for p in site.rglob("*"))

    def broken_figure(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(harness.publish, "write_figure", broken_figure)
    with pytest.raises(RuntimeError, match="figure failed"):
        harness.publish.publish_site([results], site)
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".site")]  # no staging folder left
    monkeypatch.undo()
    assert _invoke("publish", "--results", results, "--out", site).exit_code == 0  # and replacing still works
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before


# ---------------------------------------------------------------- item 6: one-line errors for unusable folders

def test_results_below_a_file_is_one_line(tmp_path):
    cfg_dir, data_dir = _tiny(tmp_path)
    (tmp_path / "afile").write_text("x")
    result = _nb_run(cfg_dir, data_dir, tmp_path / "afile" / "sub", tmp_path / "cache", "0")
    assert result.exit_code == 2
    assert result.output == f"error: --results {tmp_path / 'afile' / 'sub'}: {tmp_path / 'afile'} is a file, not a folder\n"


def test_figures_being_a_file_is_one_line(tmp_path):
    cfg_dir, data_dir = _tiny(tmp_path)
    results = tmp_path / "results"
    assert _nb_run(cfg_dir, data_dir, results, tmp_path / "cache", "0").exit_code == 0
    (results / "figures").write_text("not a folder")
    result = _invoke("report", "--results", results)
    assert result.exit_code == 2
    assert result.output == (f"error: {results / 'figures'}: is a file, but the report writes its figures into a "
                             "folder of that name; move the file away\n")


def test_status_opens_nothing_for_writing(tmp_path, monkeypatch):
    """As on a read-only results folder: any open for writing under it fails (root ignores modes)."""
    from harness.locks import FileLock

    cfg_dir, data_dir = _tiny(tmp_path)
    results = tmp_path / "results"
    assert _nb_run(cfg_dir, data_dir, results, tmp_path / "cache", "0").exit_code == 0
    held = FileLock(results / ".locks" / "tiny" / "nb" / "slice-16_seed-0.lock")
    held.acquire()  # a live run computing another cell
    idle = results / ".locks" / "tiny" / "nb" / "slice-all_seed-0.lock"
    idle.touch()
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(results)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    try:
        result = _invoke("status", "--results", results)
    finally:
        monkeypatch.undo()
        held.release()
    assert result.exit_code == 0, result.output
    row = next(line.split() for line in result.output.splitlines() if line.startswith("tiny"))
    assert row == ["tiny", "nb", "1", "0", "1"]  # done, failed, running


def test_publish_out_below_a_file_is_one_line(tmp_path):
    cfg_dir, data_dir = _tiny(tmp_path)
    results = tmp_path / "results"
    assert _nb_run(cfg_dir, data_dir, results, tmp_path / "cache", "0").exit_code == 0
    (tmp_path / "afile").write_text("x")
    result = _invoke("publish", "--results", results, "--out", tmp_path / "afile" / "site")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: --out {tmp_path / 'afile' / 'site'}: cannot write the site: ")
    assert result.output.count("\n") == 1
