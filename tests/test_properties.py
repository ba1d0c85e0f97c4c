"""Property tests (hypothesis) for what parses outside input: dataset configs, CLI lists, cell
records and the data readers. No input may end in a traceback or in a report that mixes data.

Kept small (few examples, no deadline) so that the file adds seconds, not minutes, to the suite,
and derandomized so that CI sees the same examples on every run.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click
import pandas as pd
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import _listed, _seed_list, _slice_list
from harness.config import ConfigError, DatasetConfig, load_config_file
from harness.data import build_frame
from harness.report import dataset_labels, leaderboard
from harness.sources import BUILTIN_READERS, DataError, read_rows
from harness.records import parse_record, read_record

FEW = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])

# YAML-able values of every kind a user could write
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=8)

VALID = {"name": "t", "source": {"file": "t.jsonl"}, "text": "{title}", "labels": {"field": "labels"}, "slices": [8, "all"]}
FIELDS = ["source", "text", "labels", "slices", "filters", "split", "drop_duplicate_texts", "description", "name"]


def _one_line(message: str) -> bool:
    return bool(message) and "\n" not in message.strip() and "Traceback" not in message


@FEW
@given(changes=st.dictionaries(st.sampled_from(FIELDS), values, max_size=3))
def test_any_config_loads_or_fails_in_one_line(tmp_path_factory, changes):
    path = tmp_path_factory.mktemp("cfg") / "t.yaml"
    path.write_text(yaml.safe_dump({**VALID, **changes}))
    try:
        cfg = load_config_file(path)
    except ConfigError as exc:
        assert _one_line(str(exc)) and str(exc).startswith(str(path))
        return
    assert cfg.name == "t"
    assert cfg.slices and all(s == "all" or (type(s) is int and s > 0) for s in cfg.slices)


@FEW
@given(template=st.text(alphabet="{}!:title0123 rsaz.[]>x", max_size=16))
def test_a_template_that_loads_renders(template):
    try:
        cfg = DatasetConfig.model_validate({**VALID, "text": template})
    except ValueError:
        return  # refused when the config loads, with pydantic's field message
    raw = pd.DataFrame({"title": ["a"], "labels": [["bug"]]})
    try:
        frame, _ = build_frame(cfg, raw, "t.jsonl")
    except DataError as exc:  # a field the rows lack
        assert _one_line(str(exc))
        return
    assert len(frame) == 1


@FEW
@given(value=st.text(alphabet="0123456789,-+ xall.", max_size=12))
def test_seed_lists_parse_or_fail_in_one_line(value):
    try:
        seeds = _seed_list(value)
    except click.UsageError as exc:
        assert _one_line(exc.message) and exc.message.startswith("--seeds ")
        return
    assert seeds and len(set(seeds)) == len(seeds)


@FEW
@given(value=st.one_of(st.none(), st.text(alphabet="0123456789,-+ xall.", max_size=12)))
def test_slice_lists_parse_or_fail_in_one_line(value):
    try:
        sizes = _slice_list(value)
    except click.UsageError as exc:
        assert _one_line(exc.message) and exc.message.startswith("--slices ")
        return
    if value is None:
        assert sizes is None
    else:
        assert sizes and len(set(sizes)) == len(sizes)
        assert all(s == "all" or (type(s) is int and s > 0) for s in sizes)


@FEW
@given(value=st.text(alphabet="nb,_ a-", max_size=12))
def test_name_lists_parse_or_fail_in_one_line(value):
    try:
        names = _listed("--methods", value, "method names")
    except click.UsageError as exc:
        assert _one_line(exc.message)
        return
    assert names and len(set(names)) == len(names) and all(n.strip() == n and n for n in names)


@FEW
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_a_record_file_reads_or_is_skipped(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("rec") / "slice-8_seed-0.json"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_record(path)  # a record or None (invalid: treated as missing), never an exception


def _record(dataset: str, version: int, method: str, slice_name: str, seed: int, f1: float):
    return parse_record({
        "schema_version": 2, "key": {}, "key_hash": f"{dataset}{version}{method}{slice_name}{seed}", "status": "ok",
        "seed": seed, "method": {"name": method, "label": method, "preset": "default", "params": {}},
        "slice": {"name": slice_name, "actual_n": 8},
        "dataset": {"name": dataset, "config_hash": f"cfg{version}", "fingerprint": f"data{version}"},
        "metrics": {"micro_f1": f1, "macro_f1": f1},
    })


records_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2), st.sampled_from(["nb", "knn"]),
              st.sampled_from(["8", "16", "all"]), st.integers(0, 3), st.floats(0, 1)),
    min_size=1, max_size=12,
    unique_by=lambda r: r[:2] + r[2:5],
).map(lambda rows: [_record(*row) for row in rows])


@settings(FEW, max_examples=25)  # each example builds a pandas table
@given(records=records_strategy)
def test_a_leaderboard_row_never_mixes_data_versions(records):
    # one (dataset, method, slice, seed) per data version at most, as one results folder holds
    labels = dataset_labels(records)
    by_label: dict[str, set] = {}
    for record, label in zip(records, labels):
        by_label.setdefault(label, set()).add((record.dataset.config_hash, record.dataset.fingerprint))
    assert all(len(versions) == 1 for versions in by_label.values())
    table = leaderboard(records)
    contributing = {(label, r.method.label, r.slice.name) for r, label in zip(records, labels)}
    assert set(zip(table["dataset"], table["method"], table["slice"])) == contributing
    assert table["seeds"].sum() == len({(label, r.method.label, r.slice.name, r.seed)
                                        for r, label in zip(records, labels)})


def _reads_or_names_the_file(folder: Path, name: str, content: bytes) -> None:
    path = folder / name
    path.write_bytes(content)
    source = DatasetConfig.model_validate({**VALID, "source": {"file": name}}).source
    try:
        frame = read_rows(path, source, BUILTIN_READERS)
    except DataError as exc:
        assert _one_line(str(exc)) and str(exc).startswith(str(path))
        return
    assert isinstance(frame, pd.DataFrame)


@FEW
@given(lines=st.lists(st.one_of(st.binary(max_size=30), st.builds(json.dumps, values).map(str.encode)), max_size=6))
def test_jsonl_reader_reads_or_names_the_line(tmp_path_factory, lines):
    content = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    _reads_or_names_the_file(tmp_path_factory.mktemp("data"), "t.jsonl", content)


@FEW
@given(name=st.sampled_from(["t.csv", "t.jsonl.gz", "t.parquet"]), content=st.binary(max_size=120))
def test_csv_gz_parquet_readers_read_or_name_the_file(tmp_path_factory, name, content):
    _reads_or_names_the_file(tmp_path_factory.mktemp("data"), name, content)


@FEW
@given(labels=st.lists(values, min_size=1, max_size=6))
def test_label_values_become_tags_or_name_the_row(labels):
    cfg = DatasetConfig.model_validate(VALID)
    raw = pd.DataFrame({"title": [f"t{i}" for i in range(len(labels))], "labels": pd.Series(labels, dtype=object)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame, tags = build_frame(cfg, raw, "t.jsonl")
    except DataError as exc:
        assert _one_line(str(exc)) and str(exc).startswith("t.jsonl: ")
        return
    assert all(isinstance(tag, str) for tag in tags)
    assert all(set(row) <= set(tags) for row in frame["tags"])
