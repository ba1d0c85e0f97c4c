"""What a dataset holds once loaded as ``run`` loads it: rows read, labeled and unlabeled,
duplicates dropped, split sizes, per-tag counts in each split and in the smallest slice, and
the tags too rare for the smallest slices (``harness dataset new`` and ``harness dataset show``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from harness.data import SPLITS, PreparedDataset
from harness.summary import count_phrase
from harness.splits import nested_slices

PROFILE_SEED = 0  # the slices shown are those of seed 0, the book's


@dataclass(frozen=True)
class RareTag:
    """A tag that a stratified slice of the smallest sizes is expected to miss."""

    tag: str
    labeled: int  # labeled rows carrying it, all splits
    train: int
    slices: list[int]  # the slice sizes expected to hold fewer than one of its rows


@dataclass
class Profile:
    dataset: PreparedDataset
    counts: pd.DataFrame  # tag -> labeled rows in all, train, valid, test and the smallest slice
    smallest: int | None  # the smallest numeric slice size below the train split's
    rare: list[RareTag]

    @property
    def labeled(self) -> int:
        return sum(self.dataset.sizes()[split] for split in SPLITS)

    def min_count_options(self) -> list[tuple[int, int, list[str]]]:
        """(slice size k, a ``labels.min_count``, the tags it drops): the smallest min_count
        after which every tag left is expected in slices of k and up, one per distinct value,
        from the smallest k (the most tags dropped) up."""
        options: dict[int, tuple[int, int, list[str]]] = {}
        for size in sorted({k for rare in self.rare for k in rare.slices}):
            threshold = max(rare.labeled for rare in self.rare if size in rare.slices) + 1
            dropped = [str(tag) for tag, row in self.counts.iterrows() if row["all"] < threshold]
            options.setdefault(threshold, (size, threshold, dropped))
        return list(options.values())


def profile(dataset: PreparedDataset) -> Profile:
    """The profile of a prepared dataset (``harness.data.prepare``)."""
    split_labels = {split: dataset.labels[dataset.split_rows[split]] for split in SPLITS}
    counts = pd.DataFrame({split: labels.sum(axis=0) for split, labels in split_labels.items()}, index=dataset.tags)
    counts.insert(0, "all", counts[list(SPLITS)].sum(axis=1))
    n_train = len(dataset.split_rows["train"])
    sizes = sorted(s for s in dataset.config.slices if s != "all" and s < n_train)
    smallest = sizes[0] if sizes else None
    if smallest is not None:
        with warnings.catch_warnings():  # sizes at or above the train split were left out above
            warnings.simplefilter("ignore")
            (first, *_) = nested_slices(split_labels["train"], [smallest], PROFILE_SEED)
        counts[f"slice {smallest}"] = split_labels["train"][first.positions].sum(axis=0)
    rare = []
    for tag, row in counts.iterrows():
        # a stratified slice of k of the n_train rows holds about train * k / n_train of a tag's rows
        short = [k for k in sizes if row["train"] * k / n_train < 1]
        if short:
            rare.append(RareTag(str(tag), int(row["all"]), int(row["train"]), short))
    return Profile(dataset, counts.astype(int), smallest, rare)


def render(found: Profile, config_path: Path | None = None) -> str:
    """The profile as text for the terminal."""
    dataset = found.dataset
    sizes = dataset.sizes()
    dropped = dataset.dropped
    read = [f"{count_phrase(dataset.rows_read, 'row')} read"]
    if dropped.get("filtered"):
        read.append(f"{dropped['filtered']} left out by the filters")
    read.append(f"{dropped.get('duplicates', 0)} duplicate texts dropped")
    read.append(f"{found.labeled} labeled, {sizes['unlabeled']} unlabeled")
    lines = [f"dataset {dataset.name} ({dataset.config.task}): " + ", ".join(read),
             "split: " + ", ".join(f"{split} {sizes[split]}" for split in [*SPLITS, "unlabeled"])]
    if dropped.get("rare_tags"):
        lines.append(f"dropped by labels.min_count ({dataset.config.labels.min_count}): {', '.join(dropped['rare_tags'])}")
    slice_note = f"; slice {found.smallest}: the smallest training slice, seed {PROFILE_SEED}" if found.smallest else ""
    lines += ["", f"labeled rows per tag ({count_phrase(len(dataset.tags), 'tag')}{slice_note}):",
              tabulate(found.counts, headers=["tag", *found.counts.columns], tablefmt="simple")]
    if not found.rare:
        lines += ["", "every tag is frequent enough for the smallest slice"]
        return "\n".join(lines)
    lines += ["", "too rare for the smallest slices (a stratified slice of that size is expected to hold less than one):"]
    lines += [f"  {rare.tag}: {count_phrase(rare.labeled, 'labeled row')}, {rare.train} in train; "
              f"slices {', '.join(map(str, rare.slices))}" for rare in found.rare]
    where = f" in {config_path}" if config_path else ""
    lines += ["way out: merge rare tags into broader ones with `labels.map` (raw label -> tag), or drop them "
              f"with `labels.min_count` (under `labels:`{where}):"]
    lines += [f"  min_count: {threshold} keeps every tag expected in slices of {size} and up "
              f"(drops the tags with fewer than {threshold} labeled rows: {', '.join(dropped)})"
              for size, threshold, dropped in found.min_count_options()]
    return "\n".join(lines)

