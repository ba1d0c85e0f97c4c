"""Plugin discovery: built-ins, entry points, broken plugins, duplicate method names."""

from __future__ import annotations

import sys
import textwrap

import pytest

from harness import hookimpl
from harness.methods import Method
from harness.plugins import PluginError, make_plugin_manager


@pytest.fixture
def fake_distributions(tmp_path, monkeypatch):
    """Two installed-looking distributions on sys.path: one good plugin, one that fails to import."""
    (tmp_path / "good_plugin.py").write_text(textwrap.dedent("""
        from harness import hookimpl
        from harness.methods import Method

        class Echo(Method):
            name = "echo"

        @hookimpl
        def register_methods(register):
            register(Echo)
    """))
    (tmp_path / "broken_plugin.py").write_text("import a_module_that_does_not_exist\n")
    for dist, module in (("good-plugin", "good_plugin"), ("broken-plugin", "broken_plugin")):
        info = tmp_path / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[harness]\n{module} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for module in ("good_plugin", "broken_plugin"):
        sys.modules.pop(module, None)


def test_builtin_nb_is_registered():
    pm = make_plugin_manager(autoload=False)
    assert "nb" in pm.registry.methods
    assert pm.registry.methods.origins["nb"] == "harness_nb"


def test_entry_point_plugins_load_and_a_broken_one_is_reported(fake_distributions):
    pm = make_plugin_manager(autoload=True)
    assert "echo" in pm.registry.methods and "nb" in pm.registry.methods
    good, broken = pm.plugin_info["good_plugin"], pm.plugin_info["broken_plugin"]
    assert good.error is None and good.version == "1.2.3" and good.source == "entry point of good-plugin"
    assert broken.error == "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"


def test_autoload_can_be_disabled_by_environment(fake_distributions, monkeypatch):
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = make_plugin_manager()
    assert "echo" not in pm.registry.methods and "good_plugin" not in pm.plugin_info


def test_duplicate_method_name_names_both_plugins():
    class OtherNB(Method):
        name = "nb"

    class Duplicate:
        @hookimpl
        def register_methods(self, register):
            register(OtherNB)

    pm = make_plugin_manager(autoload=False)
    pm.register_module(Duplicate(), name="my_plugin")
    with pytest.raises(PluginError, match=r"method name 'nb' is registered twice: by plugin '(harness_nb|my_plugin)' and by plugin '(my_plugin|harness_nb)'"):
        pm.registry


def test_registering_a_non_method_is_an_error():
    class Bad:
        @hookimpl
        def register_methods(self, register):
            register(object)

    pm = make_plugin_manager(autoload=False)
    pm.register_module(Bad(), name="bad_plugin")
    with pytest.raises(PluginError, match="plugin 'bad_plugin' registered .* not a harness.methods.Method subclass"):
        pm.registry


def test_unknown_hook_implementation_is_caught():
    class Typo:
        @hookimpl
        def register_method(self, register):  # missing the final 's'
            pass

    pm = make_plugin_manager(autoload=False)
    pm.register(Typo(), name="typo")
    with pytest.raises(Exception, match="register_method"):
        pm.check_pending()


def test_a_plugin_whose_registration_raises_is_reported_and_left_out(tmp_path, monkeypatch):
    """A real plugin module on $HARNESS_PLUGINS registers a method and a report format, then
    raises: `harness ls plugins` names it with its error, and every other command works."""
    import harness.plugins
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.records import iter_records
    from harness.testing import TINY_DATASET, write_tiny_dataset

    (tmp_path / "raising_plugin.py").write_text(textwrap.dedent("""
        from harness import hookimpl
        from harness.methods import Method

        class Half(Method):
            name = "half_registered"

        @hookimpl
        def register_methods(register):
            register(Half)
            raise RuntimeError("the licence server is down")

        @hookimpl
        def register_report_formats(register):
            register("half", lambda table, path: None)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "raising_plugin")
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setattr(harness.plugins, "_default_pm", None)  # the CLI builds its manager afresh
    monkeypatch.delitem(sys.modules, "raising_plugin", raising=False)
    listed = CliRunner().invoke(cli, ["ls", "plugins"])
    assert listed.exit_code == 0, listed.output
    (line,) = [line for line in listed.output.splitlines() if line.startswith("raising_plugin")]
    assert line.endswith("FAILED: register_methods raised RuntimeError: the licence server is down")
    assert "half" not in line  # nothing it registered before raising is kept
    assert "harness_nb" in listed.output and "FAILED" not in listed.output.replace(line, "")
    methods = CliRunner().invoke(cli, ["ls", "methods"])
    assert methods.exit_code == 0 and "half_registered" not in methods.output and "\nnb  version" in methods.output
    cfg_dir, data_dir = write_tiny_dataset(tmp_path / "data")
    run = CliRunner().invoke(cli, ["run", "--methods", "nb", "--datasets", TINY_DATASET, "--slices", "8",
                                   "--results", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
                                   "--datasets-cfg", str(cfg_dir), "--data-dir", str(data_dir)])
    assert run.exit_code == 0, run.output
    assert "Traceback" not in run.output and "error" not in run.output
    assert [r.status for r in iter_records(tmp_path / "results")] == ["ok"]
    assert (tmp_path / "results" / "leaderboard.md").is_file() and not (tmp_path / "results" / "leaderboard.half").exists()
