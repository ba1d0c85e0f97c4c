"""llm_icl over an OpenAI-compatible API: the HTTP client's retries, errors and request cache on
httpx.MockTransport, each response shape the scoring modes read (as recorded from llama.cpp's
server and as OpenAI's and vLLM's documentation give them), and the probe that picks a mode."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from harness_llm_icl.endpoint import Endpoint, EndpointError, RequestCache, retry_after_seconds
from harness_llm_icl.remote import (
    PromptParts, RemoteTagScorer, echoed_log_prob, forced_log_prob, generated_tags, answer_log_probs,
)

URL = "http://127.0.0.1:9/v1"
MODELS = {"object": "list", "data": [{"id": "smollm2", "object": "model"}]}
TAGS = ["bug", "docs", "feature"]

# Legacy completions with echo, as OpenAI's documentation and vLLM give it: one entry per prompt
# token, the first token's log-probability null; text_offset is each token's start in the text.
ECHO_CHOICE = {
    "index": 0, "text": "Tags: bug,",
    "logprobs": {"tokens": ["Tags", ":", " bug", ","], "token_logprobs": [None, -0.5, -1.25, -3.0],
                 "top_logprobs": [None, {":": -0.5}, {" bug": -1.25}, {",": -3.0}], "text_offset": [0, 4, 5, 9]},
}
# llama.cpp's server answers /v1/completions with the chat shape of logprobs and no echo.
LLAMACPP_COMPLETION = {
    "choices": [{"text": " bug", "index": 0, "finish_reason": "length", "logprobs": {"content": [
        {"id": 10, "token": " bug", "bytes": [32, 98, 117, 103], "logprob": -2.5,
         "top_logprobs": [{"id": 198, "token": "\n", "bytes": [10], "logprob": -1.8}]}]}}],
    "model": "smollm2", "system_fingerprint": "b0-unknown", "object": "text_completion",
    "usage": {"completion_tokens": 1, "prompt_tokens": 9, "total_tokens": 10},
}
# Chat completions with logprobs, as OpenAI's documentation gives them.
CHAT_LOGPROBS = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "B"}, "finish_reason": "length",
                 "logprobs": {"content": [{"token": "B", "logprob": -0.2, "bytes": [66], "top_logprobs": [
                     {"token": "B", "logprob": -0.2, "bytes": [66]}, {"token": " A", "logprob": -1.9, "bytes": [32, 65]},
                     {"token": "A", "logprob": -2.4, "bytes": [65]}, {"token": "The", "logprob": -4.0, "bytes": [84, 104, 101]}]}]}}],
    "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41},
}


def _endpoint(handler, tmp_path=None, **kwargs) -> tuple[Endpoint, list[float]]:
    waits: list[float] = []
    cache = RequestCache(tmp_path / "responses.sqlite") if tmp_path is not None else None
    endpoint = Endpoint(URL, None, cache, transport=httpx.MockTransport(handler), sleep=waits.append, **kwargs)
    return endpoint, waits


def _serving(answer):
    """A handler that lists one model and answers every POST with ``answer(request)``."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json=MODELS)
        return answer(request)

    return handler, seen


# ---------------------------------------------------------------- retries and errors

def test_429_waits_as_retry_after_says_then_succeeds():
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"message": "slow down"}}),
                    httpx.Response(200, json=LLAMACPP_COMPLETION)])
    handler, seen = _serving(lambda request: next(answers))
    endpoint, waits = _endpoint(handler)
    assert endpoint.post("/completions", {"prompt": "x"})["usage"]["prompt_tokens"] == 9
    assert waits == [2.0]
    assert endpoint.usage.as_dict()["requests"] == 1 and endpoint.usage.sent == 1


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_5xx_is_retried_with_growing_backoff_then_fails_in_one_line():
    handler, seen = _serving(lambda request: httpx.Response(503, text="overloaded"))
    endpoint, waits = _endpoint(handler, max_retries=3)
    with pytest.raises(EndpointError) as caught:
        endpoint.post("/completions", {"prompt": "x"})
    assert waits == [0.5, 1.0, 2.0]
    message = str(caught.value)
    assert message == f"{URL}/completions answered HTTP 503: overloaded (after 4 attempts)" and "\n" not in message


def test_a_4xx_other_than_429_is_not_retried():
    handler, seen = _serving(lambda request: httpx.Response(400, json={"error": {"message": "bad field 'echo'"}}))
    endpoint, waits = _endpoint(handler)
    with pytest.raises(EndpointError, match="answered HTTP 400: bad field 'echo'$"):
        endpoint.post("/completions", {"prompt": "x"})
    assert waits == [] and len(seen) == 2  # /models, then the one POST


def test_timeouts_and_lost_connections_are_retried_then_name_the_address():
    def handler(request):
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json=MODELS)
        raise httpx.ReadTimeout("read timed out", request=request)

    endpoint, waits = _endpoint(handler, max_retries=2)
    with pytest.raises(EndpointError, match=rf"^{URL}/completions timed out \(after 3 attempts\)$"):
        endpoint.post("/completions", {"prompt": "x"})

    def refused(request):
        raise httpx.ConnectError("connection refused", request=request)

    endpoint, waits = _endpoint(refused, max_retries=1)
    with pytest.raises(EndpointError, match=rf"^{URL}/models cannot be reached \(ConnectError\) \(after 2 attempts\)$"):
        endpoint.model_id()


def test_a_body_that_is_not_json_fails_naming_the_address():
    handler, _ = _serving(lambda request: httpx.Response(200, text="<html>proxy error</html>"))
    endpoint, _ = _endpoint(handler)
    with pytest.raises(EndpointError, match=rf"^{URL}/completions answered with a body that is not JSON"):
        endpoint.post("/completions", {"prompt": "x"})


def test_a_server_listing_other_models_names_them():
    handler, _ = _serving(lambda request: httpx.Response(200, json={}))
    endpoint = Endpoint(URL, "gpt-x", None, transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"data": [{"id": "a"}, {"id": "b"}]})))
    with pytest.raises(EndpointError, match="does not list llm_icl.model 'gpt-x' \\(it lists a, b\\)"):
        endpoint.model_id()


# ---------------------------------------------------------------- the request cache

def test_cached_answers_are_not_sent_again_and_keep_their_cost(tmp_path):
    handler, seen = _serving(lambda request: httpx.Response(200, json=LLAMACPP_COMPLETION))
    endpoint, _ = _endpoint(handler, tmp_path)
    first = endpoint.post("/completions", {"prompt": "x"})
    again, _ = _endpoint(handler, tmp_path)
    assert again.post("/completions", {"prompt": "x"}) == first
    assert [r.method for r in seen] == ["GET", "POST", "GET"]  # the second endpoint asked /models only
    assert again.usage.as_dict() == {"requests": 1, "sent": 0, "prompt_tokens": 9, "completion_tokens": 1,
                                     "request_seconds": 0.0}


def test_the_cache_key_holds_the_model_the_server_reports(tmp_path):
    served = {"id": "model-a"}

    def handler(request):
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": served["id"]}]})
        return httpx.Response(200, json={**LLAMACPP_COMPLETION, "model": served["id"]})

    first, _ = _endpoint(handler, tmp_path)
    assert first.post("/completions", {"prompt": "x"})["model"] == "model-a"
    served["id"] = "model-b"  # the same address now serves another model: its answers are not model-a's
    second, _ = _endpoint(handler, tmp_path)
    assert second.post("/completions", {"prompt": "x"})["model"] == "model-b"
    assert second.usage.sent == 1


def test_a_stopped_server_is_served_from_the_cache(tmp_path):
    handler, _ = _serving(lambda request: httpx.Response(200, json=LLAMACPP_COMPLETION))
    endpoint, _ = _endpoint(handler, tmp_path)
    answer = endpoint.post("/completions", {"prompt": "x"})

    def down(request):
        raise httpx.ConnectError("connection refused", request=request)

    offline, _ = _endpoint(down, tmp_path, max_retries=0)
    assert offline.post("/completions", {"prompt": "x"}) == answer
    with pytest.raises(EndpointError, match=rf"^{URL}/completions cannot be reached"):
        offline.post("/completions", {"prompt": "not cached"})


def test_the_api_key_goes_in_a_header_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-0123456789")
    handler, seen = _serving(lambda request: httpx.Response(500, text="server error"))
    endpoint, _ = _endpoint(handler, tmp_path, api_key_env="TEST_LLM_KEY", max_retries=0)
    with pytest.raises(EndpointError) as caught:
        endpoint.post("/completions", {"prompt": "x"})
    assert seen[-1].headers["authorization"] == "Bearer sk-test-0123456789"
    assert "sk-test" not in str(caught.value) and "sk-test" not in seen[-1].content.decode()
    monkeypatch.delenv("TEST_LLM_KEY")
    with pytest.raises(EndpointError, match="llm_icl.api_key_env names 'TEST_LLM_KEY', which is not set"):
        endpoint.post("/completions", {"prompt": "y"})


# ---------------------------------------------------------------- response shapes

def test_echo_sums_the_log_probabilities_after_the_prompt():
    # prompt "Tags:" (5 characters), continuation " bug": the tokens at offsets 5..8
    assert echoed_log_prob(ECHO_CHOICE, 5, 9, URL) == -1.25
    assert echoed_log_prob(ECHO_CHOICE, 4, 10, URL) == -4.75


def test_echo_on_a_server_that_ignores_it_fails_naming_the_field():
    with pytest.raises(EndpointError, match="gives no prompt log-probabilities with echo \\(field 'choices\\[\\].logprobs.token_logprobs'"):
        echoed_log_prob(LLAMACPP_COMPLETION["choices"][0], 5, 9, URL)


def test_forced_tokens_are_checked_and_summed():
    assert forced_log_prob(LLAMACPP_COMPLETION, [10], URL) == -2.5
    with pytest.raises(EndpointError, match="did not follow the grammar"):
        forced_log_prob(LLAMACPP_COMPLETION, [11], URL)


def test_letters_are_read_from_top_logprobs_with_a_floor_for_the_missing():
    scores = answer_log_probs(CHAT_LOGPROBS, ["A", "B", "C"], URL)
    assert scores.tolist() == [-1.9, -0.2, -4.0]  # ' A' and 'A' are one letter; C is not listed
    with pytest.raises(EndpointError, match="no top log-probabilities"):
        answer_log_probs({"choices": [{"message": {"content": "B"}}]}, ["A", "B"], URL)


def test_generated_tags_are_deduplicated_and_limited_to_known_tags():
    body = {"choices": [{"message": {"content": json.dumps({"tags": ["bug", "bug", "question"]})}}]}
    assert generated_tags(body, TAGS) == {"bug"}
    assert generated_tags({"choices": [{"message": {"content": "bug, docs"}}]}, TAGS) is None


# ---------------------------------------------------------------- probing

def _parts() -> PromptParts:
    return PromptParts(TAGS, {}, "multilabel", None, 8)


def test_auto_skips_echo_on_a_server_that_ignores_it_and_says_nothing_silently():
    """A llama.cpp-like server: no echo, no /tokenize here, chat logprobs: auto takes choice."""
    def answer(request):
        if request.url.path.endswith("/chat/completions"):
            return httpx.Response(200, json=CHAT_LOGPROBS)
        if request.url.path.endswith("/tokenize"):
            return httpx.Response(404, text="not found")
        return httpx.Response(200, json=LLAMACPP_COMPLETION)

    handler, seen = _serving(answer)
    endpoint, _ = _endpoint(handler)
    scorer = RemoteTagScorer(endpoint, _parts(), "auto")
    assert scorer.mode == "choice"
    scores = scorer.score([([("it crashes", np.array([1, 0, 0], dtype=np.uint8))], "the docs are wrong")])
    assert scores.tolist() == [[-1.9, -0.2, -4.0]]
    assert sum(r.url.path.endswith("/tokenize") for r in seen) == 1  # a server without /tokenize is asked once
    with pytest.raises(EndpointError, match=rf"^{URL}/completions gives no prompt log-probabilities with echo"):
        RemoteTagScorer(endpoint, _parts(), "echo")


def test_echo_scores_each_tag_from_one_request():
    def answer(request):
        if request.url.path.endswith("/tokenize"):
            return httpx.Response(404)
        prompts = json.loads(request.content)["prompt"]
        prompts = [prompts] if isinstance(prompts, str) else prompts
        choices = []
        for i, prompt in enumerate(prompts):  # every character after 'Tags:' scores -1 per token of one character
            start = prompt.rindex("Tags:") + len("Tags:")
            offsets = list(range(len(prompt) + 1))
            values = [None] + [-1.0 if o >= start else -0.1 for o in offsets[1:]]
            choices.append({"index": i, "logprobs": {"tokens": list(prompt) + ["x"], "token_logprobs": values,
                                                     "text_offset": offsets}})
        return httpx.Response(200, json={"choices": choices, "usage": {"prompt_tokens": 5, "completion_tokens": 1}})

    handler, seen = _serving(answer)
    endpoint, _ = _endpoint(handler)
    scorer = RemoteTagScorer(endpoint, _parts(), "auto")
    assert scorer.mode == "echo"
    assert scorer.score([([], "it crashes")]).tolist() == [[-4.0, -5.0, -8.0]]  # ' bug', ' docs', ' feature'


def test_generate_when_the_server_has_no_log_probabilities():
    def answer(request):
        body = json.loads(request.content)
        if request.url.path.endswith("/chat/completions") and "response_format" in body:
            assert body["response_format"]["json_schema"]["schema"]["properties"]["tags"]["items"] == {"enum": TAGS}
            return httpx.Response(200, json={"choices": [{"message": {"content": '{"tags": ["docs", "docs"]}'}}]})
        return httpx.Response(400, json={"error": {"message": "logprobs are not supported"}})

    handler, _ = _serving(answer)
    endpoint, _ = _endpoint(handler)
    scorer = RemoteTagScorer(endpoint, _parts(), "auto")
    assert scorer.mode == "generate"
    assert scorer.score([([], "the docs are wrong")]).tolist() == [[0.0, 1.0, 0.0]]


def test_a_server_that_supports_no_mode_says_what_each_lacks():
    handler, _ = _serving(lambda request: httpx.Response(400, json={"error": {"message": "unsupported"}}))
    endpoint, _ = _endpoint(handler)
    with pytest.raises(EndpointError) as caught:
        RemoteTagScorer(endpoint, _parts(), "auto")
    message = str(caught.value)
    assert message.startswith("no scoring mode works; echo: ") and all(f"; {m}: " in message for m in ("forced", "choice", "generate"))


def test_yesno_asks_one_question_a_tag_and_scores_yes_against_no():
    asked: list[str] = []

    def answer(request):
        if request.url.path.endswith("/tokenize"):
            return httpx.Response(404)
        question = json.loads(request.content)["messages"][0]["content"].rsplit("\n", 1)[-1]
        asked.append(question)
        yes = -0.1 if "'docs'" in question else -3.0
        return httpx.Response(200, json={"choices": [{"logprobs": {"content": [{"token": "Yes", "logprob": yes, "top_logprobs": [
            {"token": "Yes", "logprob": yes}, {"token": " no", "logprob": -1.0}]}]}}]})

    handler, _ = _serving(answer)
    endpoint, _ = _endpoint(handler)
    scorer = RemoteTagScorer(endpoint, PromptParts(TAGS, {"docs": "documentation"}, "multilabel", None, 8, "yesno"), "choice")
    assert scorer.score([([], "the docs are wrong")]).tolist() == [[-2.0, 0.9, -2.0]]
    assert asked[-3:] == ["Does the tag 'bug' apply? Answer yes or no.",
                          "Does the tag 'docs' (documentation) apply? Answer yes or no.",
                          "Does the tag 'feature' apply? Answer yes or no."]
