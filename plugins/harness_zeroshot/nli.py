"""NLI zero-shot scores, batched over all (text, hypothesis) pairs.

The numbers are those of transformers' ``ZeroShotClassificationPipeline`` with
``multi_label=True``: each pair is tokenized as the pipeline tokenizes it (only the premise is
truncated, to the tokenizer's limit unless ``max_length`` says otherwise), and a pair's score is
the softmax over its [contradiction, entailment] logits. The pipeline runs one forward pass per
pair; here the pairs are sorted by length and run in batches padded to their longest pair, each
batch capped in pairs and in padded tokens (long pairs in small batches: on a CPU, big batches
of long pairs cost more per token than small ones).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterator, Literal, Mapping

import numpy as np

from harness.toolkit import resolve_device, resolve_model


def entailment_index(label2id: Mapping[str, int], model: str) -> int:
    """The logit index of the entailment label, found as the pipeline finds it."""
    for label, index in label2id.items():
        if label.lower().startswith("entail"):
            return int(index)
    raise ValueError(
        f"model {model!r} (parameter 'model') has no entailment label in its config's label2id "
        f"({dict(label2id)}); the nli backend needs an NLI model, e.g. facebook/bart-large-mnli"
    )


def contradiction_index(entailment: int) -> int:
    # The pipeline's rule: the first logit is "contradiction" unless entailment is first, then the last.
    return -1 if entailment == 0 else 0


@functools.lru_cache(maxsize=1)  # keep one NLI model per process: the valid and test splits share it
def load_nli_model(path: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # as the pipeline does for tokenizers without a pad token
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
    return tokenizer, model


def _tokenize_pairs(tokenizer: Any, premises: list[str], hypotheses: list[str], max_length: int | None) -> list[dict[str, list[int]]]:
    """Unpadded encodings of every pair, in order. Like the pipeline, a pair whose hypothesis
    alone is too long to leave room for the premise is kept whole."""
    limit = {} if max_length is None else {"max_length": max_length}
    try:
        encoded = tokenizer(premises, hypotheses, truncation="only_first", **limit)
        pairs = [dict(zip(encoded.keys(), values)) for values in zip(*encoded.values())]
    except Exception as exc:
        if "too short" not in str(exc):
            raise
        pairs = []
        for premise, hypothesis in zip(premises, hypotheses):
            try:
                pairs.append(dict(tokenizer(premise, hypothesis, truncation="only_first", **limit)))
            except Exception as pair_exc:
                if "too short" not in str(pair_exc):
                    raise
                pairs.append(dict(tokenizer(premise, hypothesis, truncation=False)))
    names = tokenizer.model_input_names  # what the pipeline hands the model
    return [{name: pair[name] for name in names if name in pair} for pair in pairs]


def length_sorted_batches(lengths: list[int], batch_size: int, batch_tokens: int) -> Iterator[np.ndarray]:
    """Indices of ``lengths`` in batches, longest first; a batch holds at most ``batch_size``
    items and, padded to its longest, at most ``batch_tokens`` tokens (always at least one item)."""
    order = np.argsort([-n for n in lengths], kind="stable")
    start = 0
    while start < len(order):
        size = max(1, min(batch_size, batch_tokens // lengths[order[start]]))
        yield order[start:start + size]
        start += size


def nli_scores(
    texts: list[str],
    hypotheses: list[str],
    model: str,
    max_length: int | None = None,
    batch_size: int = 32,
    batch_tokens: int = 2048,
    device: str = "auto",
    precision: Literal["fp32", "bf16"] = "fp32",
    progress: Callable[[str], None] = lambda message: None,
) -> np.ndarray:
    """(len(texts), len(hypotheses)) float32 entailment probabilities, as the pipeline's multi_label=True.

    ``precision="bf16"`` runs the forward passes under bfloat16 autocast: faster where the
    hardware has bf16 matrix units, at the cost of scores that no longer equal the pipeline's.
    """
    import torch

    if not texts:
        return np.zeros((0, len(hypotheses)), dtype=np.float32)
    device = resolve_device(device)
    tokenizer, nli_model = load_nli_model(resolve_model(model, parameter="model"), device)
    entailment = entailment_index(nli_model.config.label2id, model)
    contradiction = contradiction_index(entailment)
    # pair p is (text p // L, hypothesis p % L): the row-major layout of the score matrix
    n_tags = len(hypotheses)
    encodings = _tokenize_pairs(tokenizer, [t for t in texts for _ in hypotheses], hypotheses * len(texts), max_length)
    # decoder-style models would return a key/value cache we do not need (the pipeline skips it too)
    extra = {"use_cache": False} if "use_cache" in inspect.signature(nli_model.forward).parameters else {}
    progress(f"nli: scoring {len(encodings)} (text, tag) pairs with {model}")
    logits = np.empty((len(encodings), nli_model.config.num_labels), dtype=np.float64)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), autocast:
        for chosen in length_sorted_batches([len(e["input_ids"]) for e in encodings], batch_size, batch_tokens):
            batch = tokenizer.pad([encodings[i] for i in chosen], padding=True, return_tensors="pt").to(device)
            logits[chosen] = nli_model(**batch, **extra).logits.double().cpu().numpy()
    margin = logits[:, entailment] - logits[:, contradiction]
    probabilities = 1.0 / (1.0 + np.exp(-np.clip(margin, -700, 700)))  # softmax over the two logits
    return probabilities.reshape(len(texts), n_tags).astype(np.float32)
