"""One test per hook of harness/hookspecs.py, through a plugin registered on a fresh manager;
``test_every_hook_has_a_test`` fails when a hook is added without one (datasette's pattern)."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from harness import Selection, Strategy, hookimpl, hookspecs
from harness.datasets import Settings
from harness.driver import run_plan
from harness.hashing import stable_hash
from harness.methods import Method
from harness.plan import RunPlan, plan_run
from harness.plugins import PluginError, make_plugin_manager
from harness.records import CellRecord
from harness.rebuild import rebuild_reports
from harness.testing import TINY_DATASET, write_tiny_dataset

HOOKS = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "harness_spec"))


def test_every_hook_has_a_test():
    assert len(HOOKS) == 9
    missing = [name for name in HOOKS if f"test_hook_{name}" not in globals()]
    assert not missing, f"hooks without a test in {__file__}: {missing}"


def _pm(*plugins):
    pm = make_plugin_manager(autoload=False, builtins=False)
    for number, plugin in enumerate(plugins):
        pm.register_module(plugin, name=f"plugin_{number}")
    return pm


class Echo(Method):
    """Predicts every tag for every text."""

    name = "echo"

    def fit(self, train, valid, unlabeled, context):
        self.n_tags = len(context.tags)

    def predict(self, texts):
        return np.ones((len(texts), self.n_tags), dtype=np.uint8)


class Breaks(Echo):
    name = "breaks"

    def fit(self, train, valid, unlabeled, context):
        raise RuntimeError("broken on purpose")


class MethodsPlugin:
    @hookimpl
    def register_methods(self, register):
        register(Echo)
        register(Breaks)


def test_hook_register_methods():
    pm = _pm(MethodsPlugin())
    assert pm.registry.methods["echo"] is Echo and pm.registry.methods.origins["echo"] == "plugin_0"


class FirstInPool(Strategy):
    """Picks the pool's first issues, in order."""

    name = "first_in_pool"

    def select(self, n, context):
        return Selection(np.arange(n), np.zeros(n))


def test_hook_register_strategies(tmp_path):
    """A registered strategy is planned and run: its cells train on its own picks, its first
    slice and 'all' are random's cells."""
    class StrategyPlugin:
        @hookimpl
        def register_strategies(self, register):
            register(FirstInPool)

    pm = _pm(MethodsPlugin(), StrategyPlugin())
    assert pm.registry.strategies.origins == {"random": "harness.strategies", "first_in_pool": "plugin_1"}
    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    settings = Settings(results_dir=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"),
                        data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))
    plan = plan_run(pm, settings, "echo", [TINY_DATASET], [0], strategies=["first_in_pool"])
    assert [(spec.label, spec.slice_name) for spec in plan.cells] == [
        ("echo", "8"), ("echo · first_in_pool", "16"), ("echo", "all")]
    assert run_plan(pm, plan)["ok"] == 3
    record = json.loads(plan.cells[1].path().read_text())
    assert record["method"]["strategy"] == "first_in_pool" and record["key"]["strategy"] == "first_in_pool"
    start = sorted(train_slices_of(pm, settings)["8"].positions.tolist())
    first_pool = [p for p in range(100) if p not in start][:record["slice"]["actual_n"] - len(start)]
    assert record["slice"]["index_hash"] == stable_hash(sorted(start + first_pool))

    class RandomAgain:
        @hookimpl
        def register_strategies(self, register):
            register(FirstInPool)
            register(type("Other", (FirstInPool,), {"name": "random"}))

    with pytest.raises(PluginError, match="strategy name 'random' is registered twice: by plugin 'harness.strategies' "
                                          "and by plugin 'plugin_0'"):
        _pm(RandomAgain()).registry


def train_slices_of(pm, settings):
    from harness.datasets import train_slices

    return train_slices(TINY_DATASET, settings, pm.registry.readers, (8, 16, "all"), 0)


def test_hook_register_dataset_loaders(tmp_path):
    """A reader registered on the manager in hand reads the dataset (not a process-wide manager's)."""
    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    rows = [json.loads(line) for line in (data_dir / f"{TINY_DATASET}.jsonl").read_text().splitlines()]
    (data_dir / f"{TINY_DATASET}.jsonl").unlink()
    (data_dir / f"{TINY_DATASET}.rows").write_text(json.dumps(rows))
    config = json.loads((cfg_dir / f"{TINY_DATASET}.yaml").read_text())
    (cfg_dir / f"{TINY_DATASET}.yaml").write_text(json.dumps({**config, "source": {"file": f"{TINY_DATASET}.rows"}}))

    class RowsPlugin:
        @hookimpl
        def register_dataset_loaders(self, register):
            register("rows", lambda stream, name, source: json.loads(stream.read()))

    settings = Settings(results_dir=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"),
                        data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))
    plan = plan_run(_pm(MethodsPlugin(), RowsPlugin()), settings, "echo", [TINY_DATASET], [0])
    assert len(plan.todo) == 3
    with pytest.raises(Exception, match="cannot tell the format"):  # a manager without the reader
        plan_run(_pm(MethodsPlugin()), Settings(**{**settings.__dict__, "results_dir": str(tmp_path / "r2")}),
                 "echo", [TINY_DATASET], [1])


def test_hook_register_report_formats(tmp_path):
    class JsonPlugin:
        @hookimpl
        def register_report_formats(self, register):
            register("json", lambda table, path: table.to_json(path, orient="records"))

    pm = _pm(JsonPlugin())
    assert pm.registry.report_formats.origins == {"md": "harness.report", "csv": "harness.report", "tex": "harness.report",
                                                  "html": "harness.report", "json": "plugin_0"}
    (tmp_path / "cells").mkdir()
    written = rebuild_reports(tmp_path, pm.registry.report_formats).files
    assert tmp_path / "leaderboard.json" in written and json.loads((tmp_path / "leaderboard.json").read_text()) == []

    class CsvAgain:
        @hookimpl
        def register_report_formats(self, register):
            register("csv", lambda table, path: None)

    with pytest.raises(PluginError, match="report format name 'csv' is registered twice: by plugin 'harness.report' and by plugin 'plugin_0'"):
        _pm(CsvAgain()).registry


def test_hook_register_commands():
    class HelloPlugin:
        @hookimpl
        def register_commands(self, cli):
            @cli.command()
            def hello():
                click.echo("hello from a plugin")

    group = click.Group("harness")
    _pm(HelloPlugin()).hook.register_commands(cli=group)
    assert CliRunner().invoke(group, ["hello"]).output == "hello from a plugin\n"


class Recorder:
    """Every lifecycle call, in order, with its argument."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def before_run(self, plan):
        self.calls.append(("before_run", plan))

    @hookimpl
    def after_cell(self, record):
        self.calls.append(("after_cell", record))

    @hookimpl
    def on_cell_error(self, record):
        self.calls.append(("on_cell_error", record))

    @hookimpl
    def after_run(self, summary):
        self.calls.append(("after_run", summary))


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory) -> list[tuple[str, object]]:
    """The hook calls of one run of echo (ok) and breaks (failed) on slice 8 of the tiny set."""
    folder = tmp_path_factory.mktemp("lifecycle")
    cfg_dir, data_dir = write_tiny_dataset(folder)
    settings = Settings(results_dir=str(folder / "results"), cache_dir=str(folder / "cache"),
                        data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))
    recorder = Recorder()
    pm = _pm(MethodsPlugin(), recorder)
    run_plan(pm, plan_run(pm, settings, "echo,breaks", [TINY_DATASET], [0], slices=[8]))
    return recorder.calls


def test_hook_before_run(lifecycle):
    name, plan = lifecycle[0]
    assert name == "before_run" and isinstance(plan, RunPlan) and plan.methods == ["echo", "breaks"] and len(plan.todo) == 2


def test_hook_after_cell(lifecycle):
    records = [arg for name, arg in lifecycle if name == "after_cell"]
    assert all(isinstance(r, CellRecord) for r in records)
    assert sorted((r.method.name, r.status) for r in records) == [("breaks", "failed"), ("echo", "ok")]
    assert {r.dataset.name for r in records} == {TINY_DATASET} and all(r.dataset.fingerprint for r in records)


def test_hook_on_cell_error(lifecycle):
    names = [name for name, _ in lifecycle]
    (record,) = [arg for name, arg in lifecycle if name == "on_cell_error"]
    assert record.error == "RuntimeError: broken on purpose" and "Traceback" in record.traceback
    assert names[names.index("on_cell_error") - 1] == "after_cell"  # right after the failed cell's after_cell


def test_hook_after_run(lifecycle):
    name, summary = lifecycle[-1]
    assert name == "after_run" and summary == {"planned": 2, "skipped": 0, "ok": 1, "failed": 1}
