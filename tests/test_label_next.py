"""`harness label-next` on a CSV file written here: it picks N issues that are all unlabeled,
writes their id, text fields and scores, refuses an unknown strategy or method in one line, and
once the picks are labeled in the file, `harness dataset show` counts them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli

WORDS = {"bug": ["crash", "error", "broken", "fails"], "docs": ["readme", "typo", "documentation", "example"],
         "feature": ["add", "support", "option", "new"]}


def _write_dataset(folder: Path, n_labeled: int = 90, n_unlabeled: int = 30) -> tuple[Path, Path, Path]:
    """A CSV of issues (id, title, body, labels; an empty label cell is an issue not labeled yet)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_labeled + n_unlabeled):
        tag = list(WORDS)[i % 3]
        words = " ".join(rng.choice(WORDS[tag], size=4))
        rows.append({"id": f"ISSUE-{1000 + i}", "title": f"{tag} report {i}", "body": f"it {words} here",
                     "labels": tag if i < n_labeled else ""})
    data = folder / "mine.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "title", "body", "labels"])
        writer.writeheader()
        writer.writerows(rows)
    cfg_dir = folder / "cfg"
    cfg_dir.mkdir()
    config = {"name": "mine", "source": {"file": "mine.csv"}, "text": "{title}\n\n{body}", "labels": {"field": "labels"},
              "slices": [8, 16, "all"]}
    (cfg_dir / "mine.yaml").write_text(json.dumps(config), encoding="utf-8")
    return data, cfg_dir, folder / "cache"


def _options(data: Path, cfg_dir: Path, cache: Path) -> list[str]:
    return ["--data-dir", str(data.parent), "--datasets-cfg", str(cfg_dir), "--cache-dir", str(cache)]


@pytest.mark.parametrize("strategy", ["uncertainty", "random"])
def test_label_next_picks_unlabeled_issues_with_their_fields_and_scores(tmp_path, strategy):
    data, cfg_dir, cache = _write_dataset(tmp_path)
    out = tmp_path / "next.csv"
    result = CliRunner().invoke(cli, ["label-next", "--datasets", "mine", "--method", "nb", "--strategy", strategy,
                                      "--n", "7", "--out", str(out), *_options(data, cfg_dir, cache)])
    assert result.exit_code == 0, result.output
    assert "7 of 30 unlabeled issues" in result.output
    with data.open(encoding="utf-8") as handle:
        source = {row["id"]: row for row in csv.DictReader(handle)}
    with out.open(encoding="utf-8") as handle:
        picked = list(csv.DictReader(handle))
    assert list(picked[0]) == ["rank", "id", "title", "body", "strategy_score", "predicted",
                               "score:bug", "score:docs", "score:feature"]
    assert [int(row["rank"]) for row in picked] == list(range(1, 8))
    ids = [row["id"] for row in picked]
    assert len(set(ids)) == 7 and all(source[i]["labels"] == "" for i in ids)  # unlabeled, each once
    assert all(row["title"] == source[row["id"]]["title"] and row["body"] == source[row["id"]]["body"] for row in picked)
    assert all(0 <= float(row["score:bug"]) <= 1 for row in picked)
    if strategy == "uncertainty":  # least certain first
        margins = [float(row["strategy_score"]) for row in picked]
        assert margins == sorted(margins)


def test_label_next_refuses_unknown_names_in_one_line(tmp_path):
    data, cfg_dir, cache = _write_dataset(tmp_path)
    base = ["label-next", "--datasets", "mine", "--n", "3", "--out", str(tmp_path / "next.csv"), *_options(data, cfg_dir, cache)]
    for extra, expected in [(["--method", "nb", "--strategy", "uncertainy"], "error: --strategy: unknown strategy 'uncertainy'; did you mean 'uncertainty'?"),
                            (["--method", "nbb", "--strategy", "uncertainty"], "error: --method: unknown method 'nbb'; did you mean 'nb'?"),
                            (["--method", "nb", "--n", "31"], "error: --n 31: dataset 'mine' has only 30 issues without labels")]:
        result = CliRunner().invoke(cli, base + extra)
        assert result.exit_code == 2 and result.output.startswith(expected), result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "next.csv").exists()


def test_the_labeled_picks_are_counted_by_dataset_show(tmp_path):
    data, cfg_dir, cache = _write_dataset(tmp_path)
    out = tmp_path / "next.csv"
    runner = CliRunner()
    assert runner.invoke(cli, ["label-next", "--datasets", "mine", "--method", "nb", "--n", "5", "--out", str(out),
                               *_options(data, cfg_dir, cache)]).exit_code == 0
    show = ["dataset", "show", "mine", *_options(data, cfg_dir, cache)]
    assert "90 labeled, 30 unlabeled" in runner.invoke(cli, show).output
    with out.open(encoding="utf-8") as handle:
        picked = {row["id"]: row["predicted"] or "docs" for row in csv.DictReader(handle)}  # the user's labels
    with data.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["labels"] = picked.get(row["id"], row["labels"])
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "title", "body", "labels"])
        writer.writeheader()
        writer.writerows(rows)
    assert "95 labeled, 25 unlabeled" in runner.invoke(cli, show).output
