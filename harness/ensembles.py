"""Ensembles of stored cells: no method is fitted again.

``harness report --ensemble NAME=a,b,c`` combines, for each (dataset, slice, seed) where every
member method has an ok cell with stored valid and test scores, the members' scores into a
derived cell, reported as the method ``ensemble-NAME`` beside its members:

1. Each member's scores are made comparable tag by tag (``comparable_scores``): ``calibrated``
   maps them to probabilities with a Platt sigmoid fitted on the valid tags; ``rank`` to their
   rank among the member's valid scores of that tag (no label used).
2. Weights come from greedy forward selection with replacement on valid (Caruana et al. 2004,
   as auto-sklearn and AutoGluon build their ensembles): start from the best single member,
   then repeatedly add the member (again, possibly) whose addition gives the best valid macro
   average precision of the weighted mean; keep the best step. Scaling and weights see valid
   scores and tags only; test scores are mapped with what valid fitted, test tags never read.
   When the selection keeps one member, the ensemble's scores are that member's own.
3. The combined scores are evaluated like any method's scores (``harness.evaluation``): the
   decision rules are chosen on valid, the default rule is ``threshold``.

A derived record names its members by label, key hash and stored arrays' sha256, and its own
key holds them, so it is rebuilt whenever a member's record changes; ``fresh`` leaves out any
derived record whose members changed since, so none is ever shown stale. Derived records live
beside the others (``cells/<dataset>/ensemble-NAME/``) and keep their spec: every later
report rebuilds the ensembles already in the folder.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.environment import environment
from harness.errors import HarnessError, unknown_name_message
from harness.evaluation import evaluate_scores, macro_average_precision
from harness.hashing import stable_hash
from harness.methods import LabeledTexts
from harness.predictions import PredictionsError, predictions_path, read_predictions, write_predictions
from harness.records import (
    CellRecord, Derived, DerivedMember, MethodInfo, Metrics, PredictionsFile, finished_now, parse_record, record_path,
    write_record,
)
from harness.results import StoredCell
from harness.splits import NO_SLICE, slice_order

ENSEMBLE_VERSION = "1"  # bump when the combination changes: every derived cell is then rebuilt
PREFIX = "ensemble-"
SCALINGS = ("calibrated", "rank")
DEFAULT_SCALING = "calibrated"  # measured against rank on stored cells: docs/ensembles.md
SELECTION_STEPS = 25  # additions in the greedy selection (AutoGluon's default ensemble size)
SELECTION_METRIC = "valid macro average precision"
ENSEMBLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

Note = Callable[[str], None]


@dataclass(frozen=True)
class EnsembleSpec:
    name: str
    members: tuple[str, ...]  # method labels as reported (``nb``, ``setfit@mpnet``)
    scaling: str = DEFAULT_SCALING

    @property
    def label(self) -> str:
        return PREFIX + self.name


def parse_ensemble(text: str, scaling: str = DEFAULT_SCALING) -> EnsembleSpec:
    """``NAME=a,b,c`` as an ensemble of the methods a, b and c; ValueError with one line."""
    expected = "NAME=METHOD,METHOD[,...], e.g. top=setfit,finetune,nb_aug"
    name, sep, listed = text.partition("=")
    name = name.strip()
    members = [m.strip() for m in listed.split(",") if m.strip()]
    if not sep or not ENSEMBLE_NAME.fullmatch(name):
        raise HarnessError(f"--ensemble {text!r}: expected {expected} (NAME: letters, digits, '-', '_', '.')")
    if len(set(members)) < 2:
        raise HarnessError(f"--ensemble {text!r}: an ensemble needs at least two different methods; expected {expected}")
    if len(set(members)) < len(members):
        raise HarnessError(f"--ensemble {text!r}: a method is listed twice; expected {expected}")
    if any(member.startswith(PREFIX) for member in members):
        raise HarnessError(f"--ensemble {text!r}: a member is an ensemble; list the methods themselves")
    if scaling not in SCALINGS:
        raise HarnessError(f"--ensemble-scaling {scaling!r}: expected one of {', '.join(SCALINGS)}")
    return EnsembleSpec(name, tuple(members), scaling)


def check_members(specs: Sequence[EnsembleSpec], labels: Iterable[str]) -> None:
    """ValueError (one line) for a member that is none of the method ``labels`` (of the cells in
    a results folder, or planned), or an ensemble whose label a method has."""
    known = sorted(set(labels))
    for spec in specs:
        if spec.label in known:
            raise HarnessError(f"--ensemble {spec.name}: the method label {spec.label!r} is taken by cells of a method; "
                             "choose another name")
        unknown = [m for m in spec.members if m not in known]
        if unknown:
            raise HarnessError(f"--ensemble {spec.name}: " + unknown_name_message("method", unknown[0], known))


def check_unique_names(specs: Sequence[EnsembleSpec]) -> None:
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise HarnessError(f"--ensemble: the name {repeated[0]!r} is given twice; give each ensemble its own name")


# ------------------------------------------------------------------ combining scores


def _ranks(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The mid-rank of each value among ``reference`` as a share in [0, 1], linear between the
    reference's distinct values: order-preserving, equal to the empirical CDF at them."""
    ordered = np.sort(reference)
    points = np.unique(ordered)
    mid = (np.searchsorted(ordered, points, "left") + np.searchsorted(ordered, points, "right")) / (2 * len(ordered))
    # np.interp's slope overflows between subnormal neighbours (Naive Bayes gives 1e-318 and
    # 5e-324): interpolate by the share of the gap instead, which stays within [0, 1]
    low = np.clip(np.searchsorted(points, values, "right") - 1, 0, len(points) - 1)
    high = np.minimum(low + 1, len(points) - 1)
    gap = points[high] - points[low]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        share = np.where(gap > 0, (values - points[low]) / np.where(gap > 0, gap, 1.0), 0.0)
    share = np.clip(np.nan_to_num(share), 0.0, 1.0)
    return mid[low] + share * (mid[high] - mid[low])


def _platt(scores: np.ndarray, labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A Platt sigmoid p = 1 / (1 + exp(-(a·z + b))) fitted on (scores, labels), z the scores
    standardised on them, applied to ``values``. Platt's smoothed targets ((n+ + 1) / (n+ + 2)
    and 1 / (n- + 2)) keep the fit finite when the scores separate the tag, and give a tag
    without a positive a sigmoid near its prior instead of 0. Newton's method with step
    halving on the cross-entropy, as Lin, Lin and Weng (2007) fit it."""
    from scipy.special import expit

    positives = float(labels.sum())
    negatives = len(labels) - positives
    targets = np.where(labels > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    centre, spread = float(scores.mean()), float(scores.std()) or 1.0
    z = (scores - centre) / spread

    def loss(a: float, b: float) -> float:
        logits = a * z + b
        return float(np.sum(targets * np.logaddexp(0, -logits) + (1 - targets) * np.logaddexp(0, logits)))

    a, b = 0.0, float(np.log((positives + 1) / (negatives + 1)))
    current = loss(a, b)
    for _ in range(100):
        p = expit(a * z + b)
        gradient = np.array([np.sum((p - targets) * z), np.sum(p - targets)])
        if np.abs(gradient).max() < 1e-9:
            break
        w = p * (1 - p)
        hessian = np.array([[np.sum(w * z * z) + 1e-12, np.sum(w * z)], [np.sum(w * z), np.sum(w) + 1e-12]])
        step, size = np.linalg.solve(hessian, gradient), 1.0
        while size >= 1e-8 and (trial := loss(a - size * step[0], b - size * step[1])) >= current:
            size /= 2
        if size < 1e-8:
            break
        a, b, current = a - size * step[0], b - size * step[1], trial
    return expit(a * (values - centre) / spread + b)


def comparable_scores(valid_scores: np.ndarray, test_scores: np.ndarray, valid_labels: np.ndarray,
                      scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """One member's (valid, test) scores on a scale shared by all members, tag by tag, fitted
    on valid only: ``rank`` among the valid scores (labels unused), or ``calibrated``
    probabilities (a Platt sigmoid on the valid labels)."""
    if scaling not in SCALINGS:
        raise HarnessError(f"scaling {scaling!r}: expected one of {', '.join(SCALINGS)}")
    valid_out, test_out = np.empty_like(valid_scores, dtype=np.float64), np.empty_like(test_scores, dtype=np.float64)
    for j in range(valid_scores.shape[1]):
        both = np.concatenate([valid_scores[:, j], test_scores[:, j]])
        if scaling == "rank":
            mapped = _ranks(valid_scores[:, j], both)
        else:
            mapped = _platt(valid_scores[:, j], valid_labels[:, j], both)
        valid_out[:, j], test_out[:, j] = mapped[: len(valid_scores)], mapped[len(valid_scores):]
    return valid_out, test_out


def valid_macro_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """The selection's measure: macro average precision over the tags with a valid positive
    (rule-free, so choosing weights does not also tune thresholds on the same issues)."""
    value = macro_average_precision(labels, scores)
    return -np.inf if value is None else value


@dataclass(frozen=True)
class Selection:
    weights: np.ndarray  # one per member, summing to 1
    by_step: tuple[float, ...]  # the valid measure after each addition
    best_step: int  # 1-based: the number of additions kept


def select_weights(valid_scores: Sequence[np.ndarray], valid_labels: np.ndarray, steps: int = SELECTION_STEPS,
                   measure: Callable[[np.ndarray, np.ndarray], float] = valid_macro_average_precision) -> Selection:
    """Greedy forward selection with replacement (Caruana et al. 2004) on valid: each step adds
    the member whose addition maximises ``measure(valid_labels, weighted mean)``, the first
    member on ties; the weights are the counts of the best step (the earliest among equals)."""
    counts = np.zeros(len(valid_scores), dtype=np.int64)
    total = np.zeros_like(valid_scores[0], dtype=np.float64)
    best_value, best_counts, by_step = -np.inf, counts, []
    for step in range(1, steps + 1):
        values = [measure(valid_labels, (total + member) / step) for member in valid_scores]
        chosen = int(np.argmax(values))
        counts = counts.copy()
        counts[chosen] += 1
        total = total + valid_scores[chosen]
        by_step.append(float(values[chosen]))
        if values[chosen] > best_value:
            best_value, best_counts = values[chosen], counts
    best_step = int(best_counts.sum())
    return Selection(best_counts / best_step, tuple(by_step), best_step)


def combine(scores: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The weighted mean of the members' comparable scores."""
    total = np.zeros_like(scores[0], dtype=np.float64)
    for member, weight in zip(scores, weights):
        if weight:
            total = total + weight * member
    return total


def ensemble_scores(own: Sequence[np.ndarray], comparable: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The ensemble's scores of some texts from each member's ``own`` scores of them and the same
    on the common scale (``comparable``): one member kept gives its own scores, which need no
    common scale; more give the weighted mean on it."""
    kept = np.flatnonzero(weights)
    return own[kept[0]] if len(kept) == 1 else combine(comparable, weights)


# ------------------------------------------------------------------ derived cells


@dataclass(frozen=True)
class Member:
    label: str
    record: CellRecord
    path: Path


def _member_arrays(member: Member) -> dict[str, np.ndarray]:
    """A member's stored arrays; PredictionsError when it has none or no scores."""
    if member.record.predictions is None:
        raise PredictionsError(f"{member.label} has no stored arrays (record written before they were stored)")
    arrays = read_predictions(member.path.parent / member.record.predictions.file, member.record.predictions.sha256)
    if "valid_scores" not in arrays:
        raise PredictionsError(f"{member.label} has no stored scores (its method gives 0/1 tags only)")
    return arrays


def derived_key(spec: EnsembleSpec, dataset: str, slice_name: str, seed: int, members: Sequence[Member]) -> dict:
    """The derived cell's key: the spec and every member's key hash and arrays' checksum."""
    return {
        "ensemble": spec.name, "ensemble_version": ENSEMBLE_VERSION, "scaling": spec.scaling,
        "selection_steps": SELECTION_STEPS, "dataset": dataset, "slice": slice_name, "seed": seed,
        "members": [[m.label, m.record.key_hash, m.record.predictions.sha256] for m in members],
    }


def build_derived(spec: EnsembleSpec, members: Sequence[Member], path: Path) -> CellRecord:
    """The ensemble's record for one (dataset, slice, seed), its arrays written beside ``path``.
    Raises PredictionsError when a member's arrays are unusable or the members disagree."""
    tick = time.perf_counter()
    arrays = [_member_arrays(m) for m in members]
    first = arrays[0]
    for member, stored in zip(members[1:], arrays[1:]):
        for name in ("tags", "valid_labels", "test_labels"):
            if stored[name].shape != first[name].shape or not np.array_equal(stored[name], first[name]):
                raise PredictionsError(f"{member.label} and {members[0].label} were scored on different {name.replace('_', ' ')}")
    valid_labels = first["valid_labels"]
    scaled = [comparable_scores(a["valid_scores"], a["test_scores"], valid_labels, spec.scaling) for a in arrays]
    selection = select_weights([valid for valid, _ in scaled], valid_labels)
    valid_scores = ensemble_scores([a["valid_scores"] for a in arrays], [valid for valid, _ in scaled], selection.weights)
    test_scores = ensemble_scores([a["test_scores"] for a in arrays], [test for _, test in scaled], selection.weights)
    tags = first["tags"].tolist()
    reference = next((m.record for m in members if m.record.slice.name != NO_SLICE), members[0].record)
    task = reference.dataset.task
    # the evaluation sees no texts: they are not stored, and nothing here needs them
    evaluation = evaluate_scores(valid_scores, test_scores, LabeledTexts([""] * len(valid_labels), valid_labels, tags),
                                 LabeledTexts([""] * len(first["test_labels"]), first["test_labels"], tags), task)
    key = derived_key(spec, reference.dataset.name, reference.slice.name, reference.seed, members)
    weights = {m.label: round(float(w), 6) for m, w in zip(members, selection.weights)}
    rule_metrics = {rule: Metrics.model_validate(m) for rule, m in evaluation.rule_metrics.items()}

    def member_sum(pick: Callable[[dict[str, float]], float | None]) -> float:
        values = [pick(m.record.timings) for m in members]
        return float(sum(v for v in values if v is not None))

    peaks = [m.record.peak_rss_mb for m in members if m.record.peak_rss_mb is not None]
    return CellRecord(
        key=key, key_hash=stable_hash(key), status="ok", seed=reference.seed,
        method=MethodInfo(name="ensemble", label=spec.label, preset="derived", version=ENSEMBLE_VERSION,
                          plugin="harness.ensembles",
                          params={"members": list(spec.members), "scaling": spec.scaling,
                                  "selection_steps": SELECTION_STEPS, "selection_metric": SELECTION_METRIC}),
        slice=reference.slice.model_copy(), dataset=reference.dataset.model_copy(), environment=environment(),
        metrics=rule_metrics[evaluation.rule], rule=evaluation.rule, rule_metrics=rule_metrics,
        rules=evaluation.rules, ranking=evaluation.ranking,
        predictions=PredictionsFile.model_validate(write_predictions(predictions_path(path), evaluation.arrays)),
        details={"selection": {"metric": SELECTION_METRIC, "best_step": selection.best_step,
                               "by_step": [round(v, 6) for v in selection.by_step]}},
        derived=Derived(name=spec.name, scaling=spec.scaling, weights=weights,
                        members=[DerivedMember(label=m.label, key_hash=m.record.key_hash,
                                               predictions_sha256=m.record.predictions.sha256) for m in members]),
        # the ensemble costs what its members cost: their fits and their inference, summed
        timings={"fit_s": member_sum(lambda t: t.get("fit_s")),
                 "predict_s": member_sum(lambda t: t.get("predict_s")),
                 "scores_s": member_sum(lambda t: t.get("scores_s")),
                 "combine_s": time.perf_counter() - tick},
        peak_rss_mb=max(peaks) if peaks else None,
        finished_at=finished_now(),
    )


# ------------------------------------------------------------------ a results folder

Cells = dict[tuple[str, str, str, int], tuple[Path, CellRecord]]  # (dataset, label, slice, seed) -> record


def method_labels(cells: Iterable[StoredCell]) -> set[str]:
    """The labels of the methods whose cells these are (ensembles' not included)."""
    return {cell.record.method.label for cell in cells if cell.record.derived is None}


def _index(cells: Iterable[StoredCell]) -> Cells:
    return {(c.record.dataset.name, c.record.method.label, c.record.slice.name, c.record.seed): (c.path, c.record)
            for c in cells if c.record.derived is None}


def _lookup(cells: Cells, dataset: str, label: str, slice_name: str, seed: int) -> tuple[Path, CellRecord] | None:
    """A member's cell at (slice, seed); a label-free member's one cell stands in every slice."""
    return cells.get((dataset, label, slice_name, seed)) or cells.get((dataset, label, NO_SLICE, seed))


def is_fresh(record: CellRecord, cells: Cells) -> bool:
    """Whether every member of a derived record is still the cell it was built from."""
    assert record.derived is not None
    for member in record.derived.members:
        found = _lookup(cells, record.dataset.name, member.label, record.slice.name, record.seed)
        if found is None or found[1].key_hash != member.key_hash or found[1].predictions is None \
                or found[1].predictions.sha256 != member.predictions_sha256:
            return False
    return True


def fresh(cells: list[StoredCell], on_note: Note = lambda message: None) -> list[StoredCell]:
    """``cells`` without the derived records whose members changed since they were built."""
    index = _index(cells)
    kept = []
    for cell in cells:
        if cell.record.derived is not None and not is_fresh(cell.record, index):
            on_note(f"{cell.path}: a member cell of {cell.record.method.label} changed since it was built; left out "
                    "(run 'harness report' to rebuild it)")
            continue
        kept.append(cell)
    return kept


def _spec_of(record: CellRecord) -> EnsembleSpec:
    derived = record.derived
    return EnsembleSpec(derived.name, tuple(record.method.params.get("members") or [m.label for m in derived.members]),
                        derived.scaling)


def _where(pairs: list[tuple[str, int]]) -> str:
    return ", ".join(f"slice {s} seed {k}" for s, k in sorted(pairs, key=lambda p: (slice_order(p[0]), p[1])))


@dataclass(frozen=True)
class Refreshed:
    cells: list[StoredCell]  # the folder's cells as they now are on disk, derived ones included
    written: list[Path]  # the derived records written


def refresh_ensembles(results_dir: Path, cells: list[StoredCell], specs: Sequence[EnsembleSpec] = (),
                      on_note: Note = lambda message: None) -> Refreshed:
    """Bring the derived records among ``cells`` (``harness.results.load_results(results_dir)``)
    up to date: those of ``specs`` and of every ensemble already there (a spec given here
    replaces one of the same name). A cell whose members are all stored and unchanged is kept
    as is; one whose members changed is rebuilt; one with a member missing is removed, and
    ``on_note`` says where and which. Reads no record: returns the cells as they now are.
    ValueError (one line) for a member that no record in the folder has, or a name that a
    method uses."""
    check_unique_names(specs)
    index = _index(cells)
    labels = {label for _, label, _, _ in index}
    on_disk: dict[str, list[StoredCell]] = defaultdict(list)
    for cell in cells:
        if cell.record.derived is not None:
            on_disk[cell.record.method.label].append(cell)
    check_members(specs, labels)
    wanted = {spec.label: spec for spec in specs}
    for label, items in sorted(on_disk.items()):
        wanted.setdefault(label, _spec_of(items[0].record))
    kept = [cell for cell in cells if cell.record.derived is None]
    written = []
    for spec in wanted.values():
        derived = _refresh_one(results_dir, spec, index, on_disk.get(spec.label, []), on_note)
        kept += [cell for cell, _ in derived]
        written += [cell.path for cell, new in derived if new]
    return Refreshed(sorted(kept, key=lambda cell: cell.path), written)


def _refresh_one(results_dir: Path, spec: EnsembleSpec, cells: Cells, existing: list[StoredCell],
                 on_note: Note) -> list[tuple[StoredCell, bool]]:
    """The ensemble's cells after the refresh, each with whether it was written now."""
    places = sorted({(d, s, k) for (d, label, s, k) in cells if label in spec.members and s != NO_SLICE})
    if not places:  # every member label-free: one cell per seed, like theirs
        places = sorted({(d, s, k) for (d, label, s, k) in cells if label in spec.members})
    missing: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    current = {cell.path: cell for cell in existing}
    kept: dict[Path, tuple[StoredCell, bool]] = {}
    for dataset, slice_name, seed in places:
        found = [_lookup(cells, dataset, label, slice_name, seed) for label in spec.members]
        reason = _unusable(spec, found)
        if reason is None:
            members = [Member(label, record, path) for label, (path, record) in zip(spec.members, found)]
            if len({(m.record.dataset.config_hash, m.record.dataset.fingerprint) for m in members}) > 1:
                reason = "members computed on different versions of the dataset (config or data)"
        if reason is not None:
            missing[(dataset, reason)].append((slice_name, seed))
            continue
        path = record_path(results_dir, dataset, spec.label, slice_name, seed)
        stored = current.get(path)
        key_hash = stable_hash(derived_key(spec, dataset, slice_name, seed, members))
        if stored is not None and stored.record.key_hash == key_hash and predictions_path(path).exists():
            kept[path] = (stored, False)
            continue
        try:
            record = build_derived(spec, members, path)
        except PredictionsError as exc:
            missing[(dataset, str(exc))].append((slice_name, seed))
            continue
        data = write_record(path, record)
        # held as a later read would give it (JSON types, not numpy's), without reading it back
        kept[path] = (StoredCell(path, parse_record(json.loads(data)), data), True)
    for (dataset, reason), pairs in sorted(missing.items()):
        on_note(f"ensemble {spec.name!r} ({', '.join(spec.members)}) on {dataset}: no ensemble at {_where(pairs)}: {reason}")
    for cell in existing:
        if cell.path not in kept:
            cell.path.unlink(missing_ok=True)
            predictions_path(cell.path).unlink(missing_ok=True)
    return list(kept.values())


def _unusable(spec: EnsembleSpec, found: list[tuple[Path, CellRecord] | None]) -> str | None:
    """Why these member cells cannot be combined, or None."""
    absent = [label for label, cell in zip(spec.members, found) if cell is None]
    if absent:
        return f"no cell of {', '.join(absent)}"
    failed = [label for label, (_, record) in zip(spec.members, found) if not record.ok]
    if failed:
        return f"failed cell of {', '.join(failed)}"
    unscored = [label for label, (_, record) in zip(spec.members, found) if record.predictions is None]
    if unscored:
        return f"no stored arrays for {', '.join(unscored)}"
    return None
