"""Scoring every tag of an issue through an OpenAI-compatible server, in one of four modes.

- ``echo``: ``/v1/completions`` with ``echo`` and ``logprobs`` (vLLM, llama-cpp-python, OpenAI's
  legacy models): the log-probability of each tag's tokens after the prompt, read off the
  echoed prompt by ``text_offset``. The in-process scoring, over HTTP.
- ``forced``: the same score from llama.cpp's server, which echoes nothing: one completion per
  tag whose grammar forces the tag's token ids (from ``/tokenize``); the server reports each
  forced token's log-probability under the model, before the grammar.
- ``choice``: chat completions with ``logprobs``/``top_logprobs`` (vLLM, llama.cpp, Ollama,
  hosted APIs), in one of two forms: ``letters``, the tags listed under letters and a tag's
  score the log-probability of its letter as the first answer token (one request an issue, at
  most 20 tags, OpenAI's cap on ``top_logprobs``); ``yesno``, one question a tag, its score
  log P(yes) - log P(no) of the first answer token.
- ``generate``: a JSON list of tags constrained by a schema whose items are an enum of the tags
  (``response_format``), for servers with no log-probabilities; scores are 0/1.

``auto`` probes the server once, in that order, and takes the first mode that works. A mode
whose probe fails raises EndpointError in one line naming the address and the missing field.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harness_llm_icl.endpoint import Endpoint, EndpointError
from harness_llm_icl.prompt import ISSUE_LABEL, Task, answer_label, answer_names, instruction_text

Scoring = Literal["auto", "echo", "forced", "choice", "generate"]
ChoiceForm = Literal["letters", "yesno"]
MODES: tuple[str, ...] = ("echo", "forced", "choice", "generate")
MAX_CHOICES = 20  # OpenAI's cap on top_logprobs
LETTERS = string.ascii_uppercase[:MAX_CHOICES]
Demonstrations = list[tuple[str, np.ndarray]]  # (text, 0/1 tag row)


@dataclass
class PromptParts:
    """What every mode's prompt is made of."""

    tags: list[str]
    descriptions: dict[str, str]
    task: Task
    instruction: str | None
    max_text_tokens: int
    choice_form: ChoiceForm = "letters"


def _field(body: Any, *path: Any) -> Any:
    """``body[path[0]][path[1]]...``, or None where a step is missing."""
    for step in path:
        try:
            body = body[step]
        except (KeyError, IndexError, TypeError):
            return None
    return body


class RemoteTagScorer:
    """(issues, tags) scores from a server; one instance per cell."""

    def __init__(self, endpoint: Endpoint, parts: PromptParts, scoring: Scoring) -> None:
        self.endpoint = endpoint
        self.parts = parts
        self.unparsed_answers = 0  # generate: answers that were not the JSON asked for (scored as no tag)
        self._tag_ids: list[list[int]] | None = None
        self._cut: dict[str, str] = {}  # text -> cut text: demonstrations recur in every prompt
        self._can_tokenize = True  # False once /tokenize failed: a server without it is not asked per text
        self.mode = self._choose(scoring)

    # -------------------------------------------------------------- text

    def _tokenize(self, text: str) -> list[int] | None:
        """The server's token ids for ``text`` (llama.cpp's and vLLM's ``/tokenize``); None without it."""
        if not self._can_tokenize:
            return None
        try:
            # llama.cpp reads 'content', vLLM 'prompt'; each ignores the other's field
            body = self.endpoint.post("/tokenize", {"content": text, "prompt": text, "add_special": False,
                                                    "add_special_tokens": False}, under_root=True)
        except EndpointError:
            self._can_tokenize = False
            return None
        tokens = body.get("tokens")
        return [int(t["id"] if isinstance(t, dict) else t) for t in tokens] if isinstance(tokens, list) else None

    def cut(self, text: str) -> str:
        """An issue's text cut to ``max_text_tokens`` of the server's tokens (words where the
        server cannot tokenize)."""
        if text not in self._cut:
            self._cut[text] = self._cut_once(" ".join(text.split()))
        return self._cut[text]

    def _cut_once(self, text: str) -> str:
        limit = self.parts.max_text_tokens
        ids = self._tokenize(" " + text)
        if ids is None:
            return " ".join(text.split()[:limit])
        if len(ids) <= limit:
            return text
        body = self.endpoint.post("/detokenize", {"tokens": ids[:limit]}, under_root=True)
        return str(body.get("content", "")).strip()

    def completion_prompt(self, demonstrations: Demonstrations, text: str) -> str:
        """The in-process prompt as text: instruction, demonstrations, the issue, the answer label."""
        p = self.parts
        label = answer_label(p.task)
        shown = "".join(f"{ISSUE_LABEL} {self.cut(t)}{label} {answer_names(p.tags, row)}" for t, row in demonstrations)
        return instruction_text(p.tags, p.descriptions, p.task, p.instruction) + shown + f"{ISSUE_LABEL} {self.cut(text)}{label}"

    def chat_prompt(self, demonstrations: Demonstrations, text: str, lettered: bool) -> list[dict[str, str]]:
        """One user message: the tags (under letters for ``choice``), demonstrations, the issue."""
        p = self.parts
        markers = list(LETTERS[: len(p.tags)]) if lettered else None

        def answer(row: np.ndarray) -> str:
            if lettered:
                return ", ".join(m for m, on in zip(markers, row) if on) or "none"
            return json.dumps({"tags": [tag for tag, on in zip(p.tags, row) if on]})

        ask = ("Answer with the letter of the tag that fits best." if lettered
               else 'Answer with JSON: {"tags": [...]}, the fitting tags, possibly none.')
        shown = "".join(f"\n\nIssue: {self.cut(t)}\nAnswer: {answer(row)}" for t, row in demonstrations)
        content = (instruction_text(p.tags, p.descriptions, p.task, p.instruction, markers) + f"\n{ask}" + shown
                   + f"\n\nIssue: {self.cut(text)}\nAnswer:")
        return [{"role": "user", "content": content}]

    # -------------------------------------------------------------- modes

    def _tags_as_ids(self) -> list[list[int]]:
        if self._tag_ids is None:
            ids = [self._tokenize(" " + tag) for tag in self.parts.tags]
            if any(not i for i in ids):
                raise EndpointError(f"{self.endpoint.url('/tokenize', under_root=True)} gives no token ids "
                                    f"(field 'tokens'); scoring: forced needs them")
            self._tag_ids = ids  # type: ignore[assignment]
        return self._tag_ids  # type: ignore[return-value]

    def tag_lengths(self) -> list[int]:
        """Tokens per tag for ``score=mean``: known in forced mode; 1 otherwise (mean = sum)."""
        return [len(ids) for ids in self._tags_as_ids()] if self.mode == "forced" else [1] * len(self.parts.tags)

    def _echo(self, prompt: str) -> np.ndarray:
        prompts = [f"{prompt} {tag}" for tag in self.parts.tags]
        body = self.endpoint.post("/completions", {"prompt": prompts, "echo": True, "logprobs": 1, "max_tokens": 1,
                                                   "temperature": 0})
        choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts):
            raise EndpointError(f"{self.endpoint.url('/completions')} answered {len(choices)} choices for "
                                f"{len(prompts)} prompts (field 'choices')")
        return np.array([echoed_log_prob(c, len(prompt), len(full), self.endpoint.url("/completions"))
                         for c, full in zip(choices, prompts)])

    def _forced(self, prompt: str) -> np.ndarray:
        scores = []
        for ids in self._tags_as_ids():
            grammar = "root ::= " + " ".join(f"<[{i}]>" for i in ids)
            body = self.endpoint.post("/completions", {"prompt": prompt, "grammar": grammar, "max_tokens": len(ids),
                                                       "logprobs": 1, "temperature": 0})
            scores.append(forced_log_prob(body, ids, self.endpoint.url("/completions")))
        return np.array(scores)

    def _first_token(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        return self.endpoint.post("/chat/completions", {"messages": messages, "max_tokens": 1, "logprobs": True,
                                                        "top_logprobs": MAX_CHOICES, "temperature": 0})

    def _choice(self, messages: list[dict[str, str]]) -> np.ndarray:
        body = self._first_token(messages)
        return answer_log_probs(body, list(LETTERS[: len(self.parts.tags)]), self.endpoint.url("/chat/completions"))

    def yesno_prompt(self, demonstrations: Demonstrations, text: str, tag: int) -> list[dict[str, str]]:
        """One question for one tag: does it apply? The demonstrations answer it first."""
        p = self.parts
        name = p.tags[tag]
        description = p.descriptions.get(name)
        question = f"Does the tag '{name}'" + (f" ({description})" if description else "") + " apply? Answer yes or no."
        shown = "".join(f"\n\nIssue: {self.cut(t)}\n{question} {'yes' if row[tag] else 'no'}" for t, row in demonstrations)
        content = (f"Tags of issues: {', '.join(p.tags)}." + shown + f"\n\nIssue: {self.cut(text)}\n{question}")
        return [{"role": "user", "content": content}]

    def _yesno(self, demonstrations: Demonstrations, text: str) -> np.ndarray:
        url = self.endpoint.url("/chat/completions")
        scores = []
        for tag in range(len(self.parts.tags)):
            yes, no = answer_log_probs(self._first_token(self.yesno_prompt(demonstrations, text, tag)), ["yes", "no"],
                                       url, casefold=True)
            scores.append(yes - no)
        return np.array(scores)

    def _generate(self, messages: list[dict[str, str]]) -> np.ndarray:
        tags = self.parts.tags
        schema = {"type": "object", "additionalProperties": False, "required": ["tags"],
                  "properties": {"tags": {"type": "array", "items": {"enum": tags}, "uniqueItems": True}}}
        body = self.endpoint.post("/chat/completions", {
            "messages": messages, "temperature": 0, "max_tokens": 8 * len(tags) + 16,
            "response_format": {"type": "json_schema", "json_schema": {"name": "tags", "strict": True, "schema": schema}},
        })
        chosen = generated_tags(body, tags)
        if chosen is None:
            self.unparsed_answers += 1
            chosen = set()
        return np.array([1.0 if tag in chosen else 0.0 for tag in tags])

    def score_one(self, demonstrations: Demonstrations, text: str) -> np.ndarray:
        if self.mode == "echo":
            return self._echo(self.completion_prompt(demonstrations, text))
        if self.mode == "forced":
            return self._forced(self.completion_prompt(demonstrations, text))
        if self.mode == "choice" and self.parts.choice_form == "yesno":
            return self._yesno(demonstrations, text)
        messages = self.chat_prompt(demonstrations, text, lettered=self.mode == "choice")
        return self._choice(messages) if self.mode == "choice" else self._generate(messages)

    def score(self, items: list[tuple[Demonstrations, str]]) -> np.ndarray:
        """(len(items), tags) scores, higher = more likely, issues scored ``concurrency`` at a time."""
        if not items:
            return np.zeros((0, len(self.parts.tags)))
        for demonstrations, _ in items:  # shared texts cut once, before the threads would ask for them together
            for text, _ in demonstrations:
                self.cut(text)
        return np.stack(list(self.endpoint.map(lambda item: self.score_one(*item), items)))

    # -------------------------------------------------------------- probing

    def _too_many_letters(self) -> bool:
        return self.parts.choice_form == "letters" and len(self.parts.tags) > MAX_CHOICES

    def _choose(self, scoring: Scoring) -> str:
        if scoring != "auto":
            self._probe(scoring)
            return scoring
        problems = []
        for mode in MODES:
            if mode == "choice" and self._too_many_letters():
                continue
            try:
                self._probe(mode)
                return mode
            except EndpointError as exc:
                problems.append(f"{mode}: {exc}")
        raise EndpointError("no scoring mode works; " + "; ".join(problems))

    def _probe(self, mode: str) -> None:
        """One small request that shows the server gives what ``mode`` reads; EndpointError if not."""
        self.endpoint.model_id()  # an unreachable server fails here, naming its address
        probe_demo: Demonstrations = []
        if mode == "choice" and self._too_many_letters():
            raise EndpointError(f"scoring: choice with letters reads at most {MAX_CHOICES} tags from top_logprobs; "
                                f"this dataset has {len(self.parts.tags)} (choice_form: yesno has no such limit)")
        if mode == "echo":  # one prompt: a server that ignores echo may also answer one choice for many prompts
            body = self.endpoint.post("/completions", {"prompt": "Tags: bug", "echo": True, "logprobs": 1,
                                                       "max_tokens": 1, "temperature": 0})
            echoed_log_prob(_field(body, "choices", 0), len("Tags:"), len("Tags: bug"), self.endpoint.url("/completions"))
        elif mode == "forced":
            self._forced("Tags:")
        elif mode == "choice":
            answer_log_probs(self._first_token(self.chat_prompt(probe_demo, "probe", lettered=True)), ["A"],
                             self.endpoint.url("/chat/completions"))
        elif mode == "generate":
            before = self.unparsed_answers
            self._generate(self.chat_prompt(probe_demo, "probe", lettered=False))
            if self.unparsed_answers > before:
                raise EndpointError(f"{self.endpoint.url('/chat/completions')} ignores response_format "
                                    f"(the answer was not the JSON schema asked for)")
        else:
            raise EndpointError(f"llm_icl.scoring {mode!r}: expected one of auto, {', '.join(MODES)}")


# ------------------------------------------------------------------ reading response shapes


def echoed_log_prob(choice: dict[str, Any], start: int, end: int, url: str) -> float:
    """The summed log-probability of the echoed prompt's characters [start, end), from the
    legacy completions shape ``logprobs: {tokens, token_logprobs, text_offset}``."""
    offsets = _field(choice, "logprobs", "text_offset")
    values = _field(choice, "logprobs", "token_logprobs")
    if not isinstance(offsets, list) or not isinstance(values, list) or len(offsets) != len(values):
        raise EndpointError(f"{url} gives no prompt log-probabilities with echo (field 'choices[].logprobs.token_logprobs' "
                            f"and 'text_offset'); try scoring: forced (llama.cpp) or choice")
    picked = [v for o, v in zip(offsets, values) if start <= o < end]
    if not picked or any(v is None for v in picked):
        raise EndpointError(f"{url} echoed no log-probabilities for the scored tokens (field 'choices[].logprobs.token_logprobs'); "
                            f"the server may ignore echo")
    return float(sum(picked))


def forced_log_prob(body: dict[str, Any], ids: list[int], url: str) -> float:
    """The summed log-probability of the forced tokens, from ``choices[0].logprobs.content[]``
    (llama.cpp's shape), checking that the server generated exactly those ids."""
    content = _field(body, "choices", 0, "logprobs", "content")
    if not isinstance(content, list):
        raise EndpointError(f"{url} gives no log-probabilities (field 'choices[0].logprobs.content')")
    got = [_field(c, "id") for c in content[: len(ids)]]
    if got != ids:
        raise EndpointError(f"{url} did not follow the grammar that forces the tag's tokens (field 'grammar', "
                            f"got token ids {got}, expected {ids}); scoring: forced needs llama.cpp's server")
    return float(sum(float(c["logprob"]) for c in content[: len(ids)]))


def answer_log_probs(body: dict[str, Any], answers: list[str], url: str, casefold: bool = False) -> np.ndarray:
    """Each answer's log-probability as the first answer token (a letter, yes or no), from chat
    completions' ``choices[0].logprobs.content[0].top_logprobs``; an answer missing from the
    list gets the smallest log-probability listed (an upper bound of its own)."""
    top = _field(body, "choices", 0, "logprobs", "content", 0, "top_logprobs")
    if not isinstance(top, list) or not top:
        raise EndpointError(f"{url} gives no top log-probabilities (field 'choices[0].logprobs.content[0].top_logprobs')")
    found: dict[str, float] = {}
    for entry in top:
        token, value = str(entry.get("token", "")).strip(), entry.get("logprob")
        token = token.casefold() if casefold else token
        if token in answers and value is not None:
            found[token] = max(found.get(token, -np.inf), float(value))  # ' A' and 'A' are both the letter A
    floor = min(float(e["logprob"]) for e in top if e.get("logprob") is not None)
    return np.array([found.get(answer, floor) for answer in answers])


def generated_tags(body: dict[str, Any], tags: list[str]) -> set[str] | None:
    """The tags of a generated ``{"tags": [...]}`` answer, de-duplicated and limited to known
    tags; None if the answer is not that JSON."""
    content = _field(body, "choices", 0, "message", "content")
    if not isinstance(content, str):
        return None
    try:
        answer = json.loads(content)
    except ValueError:
        return None
    listed = answer.get("tags") if isinstance(answer, dict) else answer
    if not isinstance(listed, list):
        return None
    return {str(t) for t in listed} & set(tags)
