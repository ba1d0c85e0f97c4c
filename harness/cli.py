"""The ``harness`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.config import ConfigError, available_configs, load_config_file
from harness.models import ModelResolutionError
from harness.params import DEFAULT_PRESET, ParamError
from harness.plugins import PluginError, get_plugin_manager
from harness.sources import DataError, default_cache_dir

USER_ERRORS = (ConfigError, DataError, ParamError, PluginError, ModelResolutionError, ValueError)


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="fewlabels-harness")
def cli() -> None:
    """Benchmark multi-label text classifiers at 8, 16, 32, 64, 128 and all labeled examples."""


data_dir_option = click.option(
    "--data-dir", "data_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="Folder with local copies of dataset files (searched before downloading; env HARNESS_DATA_DIR).",
)
cfg_dir_option = click.option(
    "--datasets-cfg", "cfg_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="Extra folder of dataset configs (*.yaml); env HARNESS_DATASETS_CFG.",
)
results_option = click.option(
    "--results", "results_dir", default="results", show_default=True, type=click.Path(file_okay=False, path_type=Path),
    help="Folder for cell records, leaderboards and figures.",
)


@cli.command()
@click.option("--methods", default="all", show_default=True, help="Comma-separated method names, or 'all'.")
@click.option("--datasets", default="github-issues-datasets", show_default=True, help="Comma-separated dataset names.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated slice seeds (0 gives the book's slices).")
@click.option("--slices", default=None, help="Comma-separated slice sizes or 'all' (default: the dataset config's).")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help="Parameter preset: 'default' (offline CPU) or 'book'.")
@click.option("--set", "overrides", multiple=True, metavar="METHOD.PARAM=VALUE", help="Override one method parameter.")
@click.option("--label", default=None, help="Name for a parameter variant: reported as METHOD@LABEL.")
@click.option("--retry-failed", is_flag=True, help="Run again cells whose record says they failed.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache for downloads, embeddings and models (env HARNESS_CACHE_DIR).")
@click.option("--no-report", is_flag=True, help="Do not rebuild the leaderboard and figures at the end.")
@results_option
@data_dir_option
@cfg_dir_option
def run(methods, datasets, seeds, slices, preset, overrides, label, retry_failed, cache_dir, no_report,
        results_dir, data_dirs, cfg_dirs) -> None:
    """Run every (dataset, method, slice, seed) cell not already on disk, then write reports."""
    from harness.runner import Settings, plan_run, run_plan

    pm = get_plugin_manager()
    settings = Settings(
        results_dir=str(results_dir), cache_dir=str(cache_dir or default_cache_dir()),
        data_dirs=tuple(str(d) for d in data_dirs), datasets_cfg_dirs=tuple(str(d) for d in cfg_dirs),
    )
    try:
        seed_list = [int(s) for s in _csv(seeds)]
        slice_list = [s if s == "all" else int(s) for s in _csv(slices)] or None
        plan = plan_run(pm, settings, methods, _csv(datasets), seed_list, slice_list, preset,
                        list(overrides), label, retry_failed)
    except USER_ERRORS as exc:
        _fail(exc)
    click.echo(f"{len(plan.cells)} cells: {len(plan.todo)} to run, {len(plan.skipped)} already done", err=True)
    try:
        summary = run_plan(pm, plan, echo=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        click.echo("interrupted: finished cells are saved; run the same command again to resume", err=True)
        sys.exit(130)
    click.echo(f"done: {summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} skipped", err=True)
    if not no_report:
        _write_reports(pm, results_dir)
    if summary["failed"]:
        sys.exit(1)


def _write_reports(pm, results_dir: Path) -> None:
    from harness.report import write_reports

    for path in write_reports(results_dir, pm.registry.report_formats):
        click.echo(f"wrote {path}", err=True)


@cli.command()
@results_option
def report(results_dir: Path) -> None:
    """Rebuild leaderboard.{md,csv,tex,html} and figures from the cell records; computes nothing."""
    if not (results_dir / "cells").is_dir():
        _fail(ValueError(f"{results_dir}: no cell records (expected a 'cells' folder); run 'harness run' first"))
    _write_reports(get_plugin_manager(), results_dir)
    click.echo((results_dir / "leaderboard.md").read_text(encoding="utf-8"))


@cli.group(name="ls")
def ls() -> None:
    """List installed plugins, methods or datasets."""


@ls.command(name="plugins")
def ls_plugins() -> None:
    """Plugins with their source and version, and why any failed to load."""
    from tabulate import tabulate

    pm = get_plugin_manager()
    rows = [(i.name, i.source, i.version, "ok" if not i.error else f"FAILED: {i.error}") for i in pm.plugin_info.values()]
    click.echo(tabulate(rows, headers=["plugin", "source", "version", "status"]))


@ls.command(name="methods")
def ls_methods() -> None:
    """Registered methods, the plugin each comes from, and their parameters."""
    from tabulate import tabulate

    pm = get_plugin_manager()
    try:
        registry = pm.registry
    except PluginError as exc:
        _fail(exc)
    rows = []
    for name, method_class in sorted(registry.methods.items()):
        plugin = registry.method_plugins[name]
        params = ", ".join(f"{k}={v!r}" for k, v in method_class.Params().model_dump().items())
        rows.append((name, method_class.version, plugin, pm.plugin_version(plugin), params))
    click.echo(tabulate(rows, headers=["method", "version", "plugin", "plugin version", "parameters (defaults)"]))


@ls.command(name="datasets")
@cfg_dir_option
def ls_datasets(cfg_dirs) -> None:
    """Dataset configs found, with their source."""
    from tabulate import tabulate

    rows = []
    for name, path in available_configs(list(cfg_dirs)).items():
        try:
            cfg = load_config_file(path)
            rows.append((name, cfg.source.file or cfg.source.url or cfg.source.files, cfg.description, str(path)))
        except ConfigError as exc:
            rows.append((name, "INVALID", str(exc), str(path)))
    click.echo(tabulate(rows, headers=["dataset", "source", "description", "config"]))


@cli.group(name="plugin")
def plugin() -> None:
    """Create method plugin packages."""


@plugin.command(name="new")
@click.argument("name")
@click.option("--dir", "parent", default=".", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder in which the package folder NAME is created.")
def plugin_new(name: str, parent: Path) -> None:
    """Write an installable plugin package for a method called NAME (pyproject, method, tests, README)."""
    from harness.scaffold import ScaffoldError, new_plugin

    try:
        target = new_plugin(name, parent)
    except ScaffoldError as exc:
        _fail(exc)
    click.echo(f"wrote {target}\nnext: pip install -e {target} && pytest {target}")


@cli.command()
@click.option("--results", "results_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Results folder to publish; repeat to merge several (earlier ones win conflicts). Default: results.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the static site (index.html and one page per dataset).")
def publish(results_dirs, out_dir: Path) -> None:
    """Write a static leaderboard site from one or more results folders."""
    from harness.publish import PublishError, publish_site

    try:
        site = publish_site(list(results_dirs) or [Path("results")], out_dir)
    except PublishError as exc:
        _fail(exc)
    for conflict in site.conflicts:
        click.echo(f"warning: {conflict.describe()}", err=True)
    click.echo(f"wrote {site.index} ({len(site.datasets)} dataset(s), {site.n_records} cell records)")


def main() -> None:
    pm = get_plugin_manager()
    pm.hook.register_commands(cli=cli)
    cli()
