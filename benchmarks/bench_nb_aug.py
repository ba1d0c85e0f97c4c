"""Augmentation throughput of nb_aug (texts/s) against the book notebook's way, on the mirror's train split.

- Synonym replacement (WordNet), the full 818-issue train split. Target: under 10 s.
  Naive: the notebook's loop, one ``aug.augment(text)`` per issue, with the augmenter rebuilt
  for every issue (nltk's own POS tagger cannot be downloaded, so both use the same offline tagger).
- Contextual substitution with a MiniLM-sized masked-LM (all-MiniLM-L6-v2 through
  AutoModelForMaskedLM: its MLM head is freshly initialised, fine for timing).
  Naive: the notebook's loop with nlpaug's stock ContextualWordEmbsAug (fill-mask pipeline,
  ``use_custom_api=False``), one ``aug.augment(text)`` per issue, on the same issues.
- A rerun: the full split's synonym copies read back from the per-text cache.

    HF_HUB_OFFLINE=1 python benchmarks/bench_nb_aug.py --data-dir /work/shared/data
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.datasets import Settings, load_dataset
from harness.plugins import make_plugin_manager
from harness_nb_aug import NaiveBayesAugParams, augmenter_spec
from harness_nb_aug.augmenters import Runtime, augment, build_augmenter
from harness_nb_aug.resources import penn_pos_tags, use_offline_wordnet
from harness_nb_aug.text_cache import AugmentedTextCache

DATASET = "github-issues-datasets"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def line(label: str, n: int, seconds: float) -> None:
    print(f"  {label:<58} {n:>4} texts {seconds:8.2f} s  {n / seconds:8.2f} texts/s")


def synonym(texts: list[str], work: Path, naive_n: int) -> None:
    print(f"synonym replacement (WordNet), train split of {len(texts)} issues")
    spec = augmenter_spec("synonym", NaiveBayesAugParams())
    nltk_data = work / "nltk_data"
    _, setup_s = timed(lambda: (use_offline_wordnet(nltk_data), build_augmenter(spec, "cpu").augment("warm up")))
    print(f"  one-time setup (import nlpaug, WordNet copied and loaded): {setup_s:.2f} s")
    copies, seconds = timed(augment, spec, texts, 0, 0, nltk_data)
    line("nb_aug: augment() over the whole split", len(texts), seconds)
    print(f"  target: whole split in < 10 s -> {'PASS' if seconds < 10 else 'FAIL'} ({seconds:.2f} s)")

    cache = AugmentedTextCache(work / "synonym.json", spec.key())
    cache.add(texts, 0, copies)
    cache.save()
    start = time.perf_counter()
    again = AugmentedTextCache(work / "synonym.json", spec.key())
    reread = [again.get(text, 0) for text in texts]
    line("nb_aug rerun: copies read from the per-text cache", len(texts), time.perf_counter() - start)
    assert reread == copies

    import nlpaug.augmenter.word as naw

    def notebook_loop(sample: list[str]) -> list[str]:
        out = []
        for text in sample:
            aug = naw.SynonymAug(aug_src="wordnet")  # rebuilt per issue
            aug.model.pos_tag = penn_pos_tags
            out.append(aug.augment(text)[0])
        return out

    sample = [texts[i] for i in np.random.default_rng(0).choice(len(texts), size=naive_n, replace=False)]
    _, naive_s = timed(notebook_loop, sample)
    line("naive: notebook loop, augmenter rebuilt per issue", naive_n, naive_s)
    _, ours_s = timed(augment, spec, sample, 1, 0, nltk_data)
    line("nb_aug: augment() on the same issues", naive_n, ours_s)
    print(f"  speed-up on the same issues: {naive_s / ours_s:.2f}x")


def contextual(texts: list[str], work: Path, n: int, naive_n: int, batch_size: int) -> None:
    import torch

    from harness.models import resolve_model

    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), size=n, replace=False)]  # representative lengths
    tokens = [len(t.split()) for t in sample]
    print(f"\ncontextual substitution, MiniLM-L6 masked-LM, {n} random train issues "
          f"(median {int(np.median(tokens))} words), torch threads {torch.get_num_threads()}")
    spec = augmenter_spec("contextual", NaiveBayesAugParams(contextual_model=MINILM))
    _, load_s = timed(build_augmenter, spec, "cpu")
    print(f"  one-time model load: {load_s:.2f} s")
    runtime = Runtime(batch_size=batch_size)
    _, seconds = timed(augment, spec, sample, 0, 0, work / "nltk_data", runtime)
    line(f"nb_aug: augment(), batch {batch_size}, masked-position scores", n, seconds)
    print(f"  extrapolated to the whole {len(texts)}-issue split: {len(texts) * seconds / n / 60:.1f} min")

    import nlpaug.augmenter.word as naw

    path = resolve_model(MINILM)
    torch.manual_seed(0)
    stock = naw.ContextualWordEmbsAug(model_path=path, model_type="bert", action="substitute", device="cpu",
                                      use_custom_api=False, force_reload=True)
    random.seed(0)
    _, naive_s = timed(lambda: [stock.augment(text) for text in sample[:naive_n]])
    line("naive: notebook loop, stock nlpaug, one call per issue", naive_n, naive_s)
    _, ours_s = timed(augment, spec, sample[:naive_n], 1, 0, work / "nltk_data", runtime)
    line("nb_aug: augment() on the same issues", naive_n, ours_s)
    print(f"  speed-up on the same issues: {naive_s / ours_s:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--cache-dir", default=None, help="harness cache (prepared dataset); default: a temp folder")
    parser.add_argument("--synonym-naive-texts", type=int, default=200)
    parser.add_argument("--contextual-texts", type=int, default=48)
    parser.add_argument("--contextual-naive-texts", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (timings are wall clock)")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        settings = Settings(results_dir=str(work / "results"), cache_dir=args.cache_dir or str(work / "cache"),
                            data_dirs=(args.data_dir,))
        texts = load_dataset(DATASET, settings, make_plugin_manager(autoload=False).registry.readers).labeled("train").texts
        synonym(texts, work, args.synonym_naive_texts)
        contextual(texts, work, args.contextual_texts, args.contextual_naive_texts, args.batch_size)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
