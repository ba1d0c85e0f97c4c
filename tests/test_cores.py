"""Threads for a fit: the usable cores, capped by the worker's share; OpenMP waiting by the load."""

from __future__ import annotations

import time

import pytest

from harness.cores import busy_cores, fit_threads, machine_cores, openmp_wait_policy
from harness.testing import busy_loop


@pytest.mark.parametrize("cap, expected", [("1", 1), ("1000", None), ("not a number", None), ("0", 1)])
def test_a_fit_takes_the_cores_of_its_process_capped_by_omp_num_threads(monkeypatch, cap, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", cap)
    assert fit_threads() == (expected or machine_cores())


def test_the_thread_count_does_not_follow_the_load(monkeypatch):
    # torch's results depend on its thread count: a busy machine must not change a cell's scores
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with busy_loop():
        assert fit_threads() == machine_cores()


def test_a_record_names_the_thread_count_its_scores_were_made_with(monkeypatch):
    from harness.environment import environment

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    environment.cache_clear()
    try:
        assert environment()["fit_threads"] == 1
    finally:
        environment.cache_clear()  # later tests see their own environment


def test_threads_sleep_when_other_processes_keep_half_a_core_busy():
    assert openmp_wait_policy(0.0) is None  # idle cores: libgomp's short spin, 1.5x faster there
    assert openmp_wait_policy(0.49) is None
    assert openmp_wait_policy(0.5) == "PASSIVE"
    assert openmp_wait_policy(1.7) == "PASSIVE"


def test_a_busy_looping_process_counts_as_a_busy_core():
    with busy_loop():
        time.sleep(0.3)  # the busy loop has started
        busy = busy_cores(0.3)
    assert 0.8 <= busy <= machine_cores() + 0.01


@pytest.mark.parametrize("env, expected", [
    ({}, "libgomp default (spin)"),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, "OMP_WAIT_POLICY=PASSIVE"),
    ({"GOMP_SPINCOUNT": "10000"}, "GOMP_SPINCOUNT=10000"),
])
def test_a_record_names_how_its_threads_waited(monkeypatch, env, expected):
    # a cell's seconds depend on it: 47 s spinning against 71 s sleeping on an idle machine
    from harness.environment import environment

    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    environment.cache_clear()
    try:
        assert environment()["openmp_waiting"] == expected
    finally:
        environment.cache_clear()
