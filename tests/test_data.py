"""Loading, cleaning and splitting datasets, and the book's slices on the real mirror."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import toy_config, toy_rows, write_jsonl
from harness import hookimpl
from harness.config import load_config, load_config_file, DatasetConfig
from harness.data import prepare
from harness.plugins import make_plugin_manager
from harness.sources import DataError
from harness.splits import nested_slices


def prepare_toy(tmp_path: Path, rows=None, **cfg_overrides):
    write_jsonl(tmp_path / "toy.jsonl", rows if rows is not None else toy_rows())
    cfg = DatasetConfig.model_validate(toy_config(**cfg_overrides))
    return prepare(cfg, [tmp_path], tmp_path / "cache")


def test_mirror_matches_the_reference_split_and_slices(mirror_dir, tmp_path):
    dataset = prepare(load_config("github-issues-datasets"), [mirror_dir], tmp_path)
    assert dataset.sizes() == {"train": 818, "valid": 410, "test": 413, "unlabeled": 5546}
    assert dataset.tags == sorted(dataset.tags) and len(dataset.tags) == 11
    train_labels = dataset.labels[dataset.split_rows["train"]]
    slices = nested_slices(train_labels, [8, 16, 32, 64, 128, "all"], seed=0)
    assert [s.size for s in slices] == [6, 12, 30, 61, 127, 818]
    # nested: each slice contains the one before it
    for small, big in zip(slices, slices[1:]):
        assert set(small.positions) <= set(big.positions)


def test_splits_and_slices_are_deterministic_per_seed(mirror_dir, tmp_path):
    first = prepare(load_config("github-issues-datasets"), [mirror_dir], tmp_path)
    again = prepare(load_config("github-issues-datasets"), [mirror_dir], tmp_path)
    assert first.fingerprint == again.fingerprint
    for split in first.split_rows:
        np.testing.assert_array_equal(first.split_rows[split], again.split_rows[split])
    labels = first.labels[first.split_rows["train"]]
    seed0 = [s.index_hash() for s in nested_slices(labels, [8, 16, "all"], seed=0)]
    assert seed0 == [s.index_hash() for s in nested_slices(labels, [8, 16, "all"], seed=0)]
    seed1 = [s.index_hash() for s in nested_slices(labels, [8, 16, "all"], seed=1)]
    assert seed0[:2] != seed1[:2] and seed0[2] == seed1[2]
    # the caller's global NumPy generator is left as it was
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    nested_slices(labels, [8], seed=5)
    assert np.random.rand() == expected


def test_text_template_label_map_nulls_and_dedup(tmp_path):
    rows = toy_rows()
    rows.append(dict(rows[1]))  # exact duplicate text: dropped
    dataset = prepare_toy(tmp_path, rows, labels={"field": "labels", "map": {"bug": "defect", "docs": "docs"}})
    assert dataset.tags == ["defect", "docs"]  # 'feature' is not mapped: dropped
    assert len(dataset.texts) == 40
    assert dataset.texts[0] == "issue 0 about bug\n\n"  # null body renders as empty
    # rows whose only label was unmapped become unlabeled
    unlabeled = {dataset.texts[i] for i in dataset.split_rows["unlabeled"]}
    assert any("about feature" in t for t in unlabeled)


def test_row_filters_drop_pull_requests(tmp_path):
    dataset = prepare_toy(tmp_path, filters=[{"field": "pull_request", "is_null": True}])
    assert len(dataset.texts) == 20  # odd rows only


@pytest.mark.parametrize("fmt", ["jsonl.gz", "csv", "parquet", "zip"])
def test_file_formats(tmp_path, fmt):
    rows = toy_rows()
    flat = [{**r, "labels": ",".join(l["name"] for l in r["labels"]), "pull_request": None} for r in rows]
    if fmt == "jsonl.gz":
        with gzip.open(tmp_path / "toy.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        source = {"file": "toy.jsonl.gz"}
    elif fmt == "csv":
        pd.DataFrame(flat).to_csv(tmp_path / "toy.csv", index=False)
        source = {"file": "toy.csv"}
    elif fmt == "parquet":
        pd.DataFrame(flat).to_parquet(tmp_path / "toy.parquet")
        source = {"file": "toy.parquet"}
    else:
        with zipfile.ZipFile(tmp_path / "toy.zip", "w") as archive:
            archive.writestr("inner/toy.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        source = {"file": "toy.zip", "member": "inner/toy.jsonl"}
    cfg = DatasetConfig.model_validate(toy_config(source=source))
    dataset = prepare(cfg, [tmp_path], tmp_path / "cache")
    assert dataset.tags == ["bug", "docs", "feature"]
    assert sum(dataset.sizes().values()) == 40


def test_predefined_split_column_carves_valid_from_train(tmp_path):
    rows = toy_rows(60)
    for i, row in enumerate(rows):
        row["part"] = "test" if i % 4 == 0 else "train"
    dataset = prepare_toy(tmp_path, rows, split={"method": "column", "column": "part"},
                          text="{title}\n\n{body}\n{part}")
    test_texts = {dataset.texts[i] for i in dataset.split_rows["test"]}
    assert test_texts and all(t.endswith("test") for t in test_texts)
    assert len(dataset.split_rows["valid"]) > 0
    assert not set(dataset.split_rows["valid"]) & set(dataset.split_rows["train"])


def test_predefined_split_files(tmp_path):
    rows = toy_rows(60)
    write_jsonl(tmp_path / "train.jsonl", rows[:40])
    write_jsonl(tmp_path / "test.jsonl", rows[40:])
    cfg = DatasetConfig.model_validate(toy_config(source={"files": {"train": "train.jsonl", "test": "test.jsonl"}},
                                                  split={"method": "files"}))
    dataset = prepare(cfg, [tmp_path], tmp_path / "cache")
    test_texts = {dataset.texts[i] for i in dataset.split_rows["test"]}
    assert all(int(t.split()[1]) >= 40 for t in test_texts)
    assert len(dataset.split_rows["valid"]) > 0


COMPRESSORS = {
    "gz": gzip.compress, "bz2": __import__("bz2").compress, "xz": __import__("lzma").compress,
    "zst": lambda data: __import__("zstandard").ZstdCompressor().compress(data),
}


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_every_format_reads_compressed(tmp_path, fmt, compression):
    rows = toy_rows()
    flat = pd.DataFrame([{**r, "labels": ",".join(l["name"] for l in r["labels"]), "pull_request": None} for r in rows])
    if fmt == "csv":
        data = flat.to_csv(index=False).encode()
    elif fmt == "parquet":
        data = flat.to_parquet()
    else:
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (tmp_path / f"toy.{fmt}.{compression}").write_bytes(COMPRESSORS[compression](data))
    dataset = prepare(DatasetConfig.model_validate(toy_config(source={"file": f"toy.{fmt}.{compression}"})), [tmp_path], tmp_path / "c")
    assert dataset.tags == ["bug", "docs", "feature"] and len(dataset.texts) == 40


@pytest.mark.parametrize("content, problem", [
    (b"plain text, not gzip\n", "BadGzipFile"),
    (gzip.compress(b'{"title": "a"}\n' * 200)[:-30], "EOFError"),  # truncated
])
def test_a_broken_gz_file_is_one_line_naming_it(tmp_path, content, problem):
    (tmp_path / "toy.jsonl.gz").write_bytes(content)
    with pytest.raises(DataError) as error:
        prepare(DatasetConfig.model_validate(toy_config(source={"file": "toy.jsonl.gz"})), [tmp_path], tmp_path / "c")
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'toy.jsonl.gz'}: not a readable .gz file") and problem in message
    assert "\n" not in message


def test_a_zip_of_several_files_asks_for_a_member(tmp_path):
    with zipfile.ZipFile(tmp_path / "toy.zip", "w") as archive:
        archive.writestr("a.jsonl", "{}\n")
        archive.writestr("b.jsonl", "{}\n")
    with pytest.raises(DataError, match=r"toy.zip: the zip archive holds 2 files \(a.jsonl, b.jsonl\); set source.member"):
        prepare(DatasetConfig.model_validate(toy_config(source={"file": "toy.zip"})), [tmp_path], tmp_path / "c")


def test_user_config_folder_adds_a_dataset(tmp_path):
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(toy_config(name="mine")))
    assert load_config("mine", [tmp_path]).name == "mine"
    assert load_config_file(tmp_path / "mine.yaml").text == "{title}\n\n{body}"


def test_a_plugin_reader_adds_a_file_format(tmp_path):
    def read_tsv(stream, name, source):
        header, *lines = stream.read().decode(source.encoding).splitlines()
        keys = header.split("\t")
        return [dict(zip(keys, line.split("\t"))) for line in lines]

    class TsvPlugin:
        @hookimpl
        def register_dataset_loaders(self, register):
            register("tsv", read_tsv)

    pm = make_plugin_manager(autoload=False, builtins=False)
    pm.register_module(TsvPlugin(), name="tsv_plugin")
    assert pm.registry.readers.origins["tsv"] == "tsv_plugin" and pm.registry.readers.origins["csv"] == "harness.sources"
    rows = "title\tlabels\n" + "".join(f"issue {i}\t{['bug', 'docs'][i % 2]}\n" for i in range(20))
    (tmp_path / "toy.tsv.gz").write_bytes(gzip.compress(rows.encode()))  # a plugin's format may be compressed too
    cfg = DatasetConfig.model_validate(toy_config(source={"file": "toy.tsv.gz"}, text="{title}"))
    dataset = prepare(cfg, [tmp_path], tmp_path / "cache", pm.registry.readers)
    assert dataset.tags == ["bug", "docs"] and len(dataset.texts) == 20
