"""The self-training loop: rounds of fit, score the pool, pseudo-label, refit; best valid round wins.

Round 0 is the base fitted on the slice alone. Round r (1..R) re-labels the pool with the
previous round's model, takes at most r x ``max_per_tag`` texts per tag (in proportion to the
slice's tag counts), and fits the student on the slice plus them. The loop stops after R
rounds, when no pool text is confident, or at the first round whose valid F1 is not above the
best so far; the best round's model is kept. Pseudo-labels come only from the unlabeled pool,
never from a valid or training text (the pool is cleared of exact copies of both).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import FitContext, LabeledTexts, Method, MethodParams
from harness.toolkit import (
    ChosenRules,
    argmax_predictions,
    cached_artifact,
    choose_rules,
    f1,
    has_own_predict,
    seed_everything,
    stable_hash,
    text_key,
    validate_scores,
    write_npy_atomic,
)

from harness_self_train.pseudo import PseudoLabels, select_pseudo_labels, tag_quotas

if TYPE_CHECKING:
    from harness_self_train.method import SelfTrainParams

Resolved = tuple[type[Method], MethodParams]
POOL_SCORES_VERSION = "1"  # bump when cached pool scores of a label-free labeller must be recomputed


def pool_texts(unlabeled: list[str], labeled: list[str]) -> tuple[list[str], int]:
    """The unlabeled texts that are not a copy of a labeled one (nor of an earlier pool text), in
    order, and how many were dropped: a copy of a valid text would leak it into training."""
    seen = {text_key(text) for text in labeled}
    kept = []
    for text in unlabeled:
        key = text_key(text)
        if key not in seen:
            seen.add(key)
            kept.append(text)
    return kept, len(unlabeled) - len(kept)


class _Fitted:
    """A fitted model, the core's rules chosen on its valid scores, and its valid F1 (under its
    own prediction, or, when it gives scores only, the ``threshold`` rule; argmax for a multiclass task)."""

    def __init__(self, model: Method, method_class: type[Method], params: MethodParams, training_texts: int,
                 valid: LabeledTexts, fit_s: float, multiclass: bool) -> None:
        self.model, self.method_class, self.params = model, method_class, params
        self.training_texts, self.fit_s = training_texts, fit_s
        scores = validate_scores(method_class.name, model.predict_scores(valid.texts), len(valid), len(valid.tags))
        self.rules = choose_rules(scores, valid.labels, list(valid.tags))
        if has_own_predict(model):
            prediction = np.asarray(model.predict(valid.texts)).astype(np.uint8)
        else:
            prediction = argmax_predictions(scores) if multiclass else self.rules.apply("threshold", scores)
        self.valid_f1 = {average: f1(valid.labels, prediction, average) for average in ("micro", "macro")}


class SelfTraining:
    def __init__(self, params: SelfTrainParams, base: Resolved, student: Resolved, context: FitContext) -> None:
        self.params, self.base, self.student, self.context = params, base, student, context
        self.rounds: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ the loop

    def run(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str]) -> tuple[Method, ChosenRules]:
        p, tags = self.params, list(train.tags)
        pool, dropped = pool_texts(unlabeled, train.texts + valid.texts)
        if p.pool_size is not None and len(pool) > p.pool_size:
            keep = np.sort(np.random.default_rng(self.context.seed).choice(len(pool), p.pool_size, replace=False))
            pool = [pool[i] for i in keep]
        self.pool = pool
        self.summary = {"base": p.base, "student": p.student or p.base, "pool_texts": len(pool),
                        "pool_copies_of_labeled_texts_dropped": dropped, "pool_scores": "model"}
        labeller = self._fit(*self.base, train, valid, unlabeled)
        self.rounds.append(self._round_record(0, labeller, None, None))
        best, best_round, stop = labeller, 0, "rounds done"
        used = 0  # pseudo-labelled texts in the best round's training set
        for round_number in range(1, p.rounds + 1):
            if not pool:
                stop = "empty pool"
                break
            pseudo = self._pseudo_labels(labeller, train.labels, round_number)
            if not len(pseudo):
                stop = "no confident pool text"
                break
            texts = [pool[i] for i in pseudo.positions]
            agreement = self._agreement(labeller, texts, pseudo)
            augmented = LabeledTexts(train.texts + texts, np.vstack([train.labels, pseudo.labels]), tags)
            model = self._fit(*self.student, augmented, valid, unlabeled)
            self.rounds.append(self._round_record(round_number, model, pseudo, agreement))
            self.context.progress(
                f"self_train slice {self.context.slice_name}: round {round_number}, {len(pseudo)} pseudo-labelled "
                f"texts, valid {p.select_by} F1 {model.valid_f1[p.select_by]:.3f}"
            )
            if model.valid_f1[p.select_by] <= best.valid_f1[p.select_by]:
                stop = "valid F1 fell" if model.valid_f1[p.select_by] < best.valid_f1[p.select_by] else "valid F1 did not improve"
                break
            best, best_round, labeller, used = model, round_number, model, len(texts)
        self.summary.update(best_round=best_round, stop=stop, pseudo_labels_used=used)
        return best.model, best.rules

    def details(self) -> dict[str, Any]:
        return {**self.summary, "rounds": self.rounds}

    # ------------------------------------------------------------------ steps

    def _fit(self, method_class: type[Method], params: MethodParams, train: LabeledTexts, valid: LabeledTexts,
             unlabeled: list[str]) -> _Fitted:
        seed_everything(self.context.seed)  # every fit starts from the cell's seed, whatever came before
        tick = time.perf_counter()
        model = method_class(params)
        model.fit(train, valid, unlabeled, self.context)
        return _Fitted(model, method_class, params, len(train), valid, time.perf_counter() - tick,
                       multiclass=self.context.task == "multiclass")

    def _pseudo_labels(self, labeller: _Fitted, slice_labels: np.ndarray, round_number: int) -> PseudoLabels:
        thresholds = np.asarray(labeller.rules.per_tag)
        quotas = tag_quotas(slice_labels, round_number * self.params.max_per_tag)
        return select_pseudo_labels(self._pool_scores(labeller), thresholds, quotas,
                                    multiclass=self.context.task == "multiclass")

    def _pool_scores(self, labeller: _Fitted) -> np.ndarray:
        """The labeller's pool scores; cached once per pool when its scores ignore the slice."""
        method_class = labeller.method_class

        def compute() -> np.ndarray:
            scores = labeller.model.predict_scores(self.pool)
            return validate_scores(method_class.name, scores, len(self.pool), len(self.context.tags))

        if method_class.uses_labels:
            return compute()
        path = self.context.cache_path(
            "self_train_pool_scores", POOL_SCORES_VERSION, self.context.fingerprint, method_class.name,
            method_class.version, labeller.params.model_dump(mode="json"), list(self.context.tags),
            stable_hash([text_key(t) for t in self.pool]),
        ).with_suffix(".npy")

        def load() -> np.ndarray | None:
            if not path.exists():
                return None
            cached = np.load(path)
            return cached if cached.shape == (len(self.pool), len(self.context.tags)) else None

        def build() -> np.ndarray:
            scores = compute()
            write_npy_atomic(path, scores)
            return scores

        scores, built = cached_artifact(path, load, build)
        self.summary["pool_scores"] = "computed" if built else "cache"
        return scores

    @staticmethod
    def _agreement(labeller: _Fitted, texts: list[str], pseudo: PseudoLabels) -> float | None:
        """Share of pseudo-labelled (text, tag) pairs equal to the labeller's own prediction."""
        if not has_own_predict(labeller.model):
            return None
        own = np.asarray(labeller.model.predict(texts)).astype(np.uint8)
        return round(float((own == pseudo.labels).mean()), 5)

    def _round_record(self, round_number: int, fitted: _Fitted, pseudo: PseudoLabels | None,
                      agreement: float | None) -> dict[str, Any]:
        return {
            "round": round_number,
            "training_texts": fitted.training_texts,
            "pseudo_labelled_texts": len(pseudo) if pseudo is not None else 0,
            "pseudo_labels_per_tag": pseudo.per_tag(list(self.context.tags)) if pseudo is not None else {},
            "agreement_with_own_predict": agreement,
            "valid_micro_f1": round(fitted.valid_f1["micro"], 5),
            "valid_macro_f1": round(fitted.valid_f1["macro"], 5),
            "fit_s": round(fitted.fit_s, 3),
        }
