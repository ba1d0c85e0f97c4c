"""The ``harness`` command line."""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from harness.config import USER_CFG_DIR, ConfigError, available_configs, load_config_file
from harness.errors import HarnessError
from harness.params import DEFAULT_PRESET, ParamError
from harness.plugins import PluginError, get_plugin_manager
from harness.rules import RULES
from harness.sources import default_cache_dir

if TYPE_CHECKING:
    from harness.ensembles import EnsembleSpec

# Bad input, shown as one line. Anything else is a bug and keeps its traceback.
USER_ERRORS = (HarnessError, click.UsageError)


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


def _listed(option: str, value: str | None, expected: str) -> list[str]:
    """The comma-separated items of an option, refusing an empty list and repeated items."""
    items = _csv(value)
    if value is not None and not items:
        raise click.UsageError(f"{option} {value!r}: no value given; expected {expected}")
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise click.UsageError(f"{option} {value!r}: {', '.join(repeated)} given twice; expected {expected}")
    return items


def _seed_list(value: str) -> list[int]:
    expected = "comma-separated integers, e.g. 0,1,2"
    items = _listed("--seeds", value, expected)
    for item in items:
        if not item.lstrip("-").isdigit():
            raise click.UsageError(f"--seeds {value!r}: {item!r} is not an integer; expected {expected}")
    seeds = [int(item) for item in items]
    if len(set(seeds)) < len(seeds):  # '0' and '00' are the same seed
        raise click.UsageError(f"--seeds {value!r}: a seed is given twice; expected {expected}")
    return seeds


def _slice_list(value: str | None) -> list[int | str] | None:
    """Slice sizes (positive integers or 'all'), or None for the dataset config's."""
    expected = "positive integers or 'all', e.g. 8,16,all"
    if value is None:
        return None
    sizes: list[int | str] = []
    for item in _listed("--slices", value, expected):
        if item != "all" and not (item.isdigit() and int(item) > 0):
            raise click.UsageError(f"--slices {value!r}: {item!r} is not a slice size; expected {expected}")
        sizes.append(item if item == "all" else int(item))
    if len(set(sizes)) < len(sizes):
        raise click.UsageError(f"--slices {value!r}: a size is given twice; expected {expected}")
    return sizes


def _check_preset(pm, preset: str) -> None:
    from harness.errors import unknown_name_message

    known = {DEFAULT_PRESET} | {name for method in pm.registry.methods.values() for name in method.presets}
    if preset not in known:
        raise click.UsageError("--preset: " + unknown_name_message("preset", preset, sorted(known)))


def _check_results_dir(results_dir: Path) -> None:
    """A results folder that cannot be one fails here in one line, not at its first record."""
    for folder in [results_dir, *results_dir.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise click.UsageError(f"--results {results_dir}: {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise click.UsageError(f"--results {results_dir}: {folder} is not writable")
            return


def _check_timeout(seconds: float | None) -> None:
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise click.UsageError(f"--cell-timeout {seconds}: expected a positive, finite number of seconds")


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="fewlabels-harness")
def cli() -> None:
    """Benchmark multi-label text classifiers at 8, 16, 32, 64, 128 and all labeled examples."""
    warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (an invalid cell record, a slice clamped to the train split) as one line each."""
    click.echo(f"warning: {message}", err=True)


data_dir_option = click.option(
    "--data-dir", "data_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="Folder with local copies of dataset files (searched before downloading; env HARNESS_DATA_DIR).",
)
cfg_dir_option = click.option(
    "--datasets-cfg", "cfg_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="Extra folder of dataset configs (*.yaml); env HARNESS_DATASETS_CFG.",
)
rule_option = click.option(
    "--rule", default="own", show_default=True, type=click.Choice(RULES),
    help="Decision rule of the leaderboard and figures: the methods' own, or one the core chose on valid "
         "(a cell without scores keeps its own).",
)
# harness.ensembles' SCALINGS and DEFAULT_SCALING, written out so that loading the CLI imports no scikit-learn
# (tests/test_ensembles.py checks that they agree)
ENSEMBLE_SCALINGS, DEFAULT_ENSEMBLE_SCALING = ("calibrated", "rank"), "calibrated"
ensemble_options = [
    click.option("--ensemble", "ensembles", multiple=True, metavar="NAME=a,b,c",
                 help="Report the ensemble NAME of these methods' stored scores as the row ensemble-NAME "
                      "(weights chosen on valid; repeatable). Ensembles already in the folder are rebuilt too."),
    click.option("--ensemble-scaling", default=DEFAULT_ENSEMBLE_SCALING, show_default=True,
                 type=click.Choice(ENSEMBLE_SCALINGS),
                 help="How the members' scores are made comparable for the ensembles given here: a sigmoid "
                      "fitted on valid per tag, or the rank among the valid scores."),
]


def with_ensemble_options(command: Callable) -> Callable:
    """``--ensemble`` and ``--ensemble-scaling``, shared by run and report."""
    for option in reversed(ensemble_options):
        command = option(command)
    return command


def _ensemble_specs(texts: tuple[str, ...], scaling: str) -> list[EnsembleSpec]:
    from harness.ensembles import check_unique_names, parse_ensemble

    try:
        specs = [parse_ensemble(text, scaling) for text in texts]
        check_unique_names(specs)
    except HarnessError as exc:
        _fail(exc)
    return specs


unlabeled_option = click.option(
    "--unlabeled", default=None, metavar="SOURCES",
    help="The unlabeled pool, overriding each dataset config's 'unlabeled': unlabeled_rows (rows without "
         "tags), rest_of_train (training issues outside the slice, labels hidden), both comma-separated, or none.",
)


def _unlabeled(value: str | None) -> list[str] | None:
    from harness.config import parse_unlabeled

    if value is None:
        return None
    try:
        return parse_unlabeled(value)
    except HarnessError as exc:
        raise click.UsageError(f"--unlabeled {value!r}: {exc}") from None


def strategy_options(command: Callable) -> Callable:
    """``--strategies`` and ``--selector``, shared by run and status."""
    for option in reversed([
        click.option("--strategies", default="random", show_default=True,
                     help="Comma-separated query strategies (harness ls strategies): random is the nested stratified "
                          "slices; the others pick each slice's issues from the same first slice."),
        click.option("--selector", default=None, metavar="METHOD",
                     help="The method whose scores guide the strategies' picks (default: the evaluated method)."),
    ]):
        command = option(command)
    return command


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
@click.option("--executor", type=click.Choice(["serial", "process", "dask"]), default=None,
              help="Where cells run: here one by one (default), local worker processes, or Dask.")
@click.option("--jobs", type=int, default=None,
              help="Worker processes (process) or LocalCluster workers (dask); N > 1 implies --executor process.")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Join a running Dask scheduler (implies --executor dask).")
@click.option("--cell-timeout", type=float, default=None, metavar="SECONDS",
              help="Fail a cell that runs longer, killing its worker (serial then runs cells in one worker process).")
@click.option("--device", "devices", multiple=True, metavar="DEVICE|METHOD=DEVICE",
              help="Where torch methods and embeddings run: auto (CUDA where available; the default), cpu, cuda, "
                   "cuda:N or mps; METHOD=DEVICE for one method (repeatable).")
@click.option("--quiet", is_flag=True, help="Print only errors.")
@click.option("--json-progress", is_flag=True, help="Write progress as JSON lines on stdout, for scripts.")
@strategy_options
@unlabeled_option
@rule_option
@with_ensemble_options
@results_option
@data_dir_option
@cfg_dir_option
def run(methods, datasets, seeds, slices, preset, overrides, label, retry_failed, cache_dir, no_report,
        executor, jobs, scheduler, cell_timeout, devices, quiet, json_progress, strategies, selector, unlabeled, rule,
        ensembles, ensemble_scaling, results_dir, data_dirs, cfg_dirs) -> None:
    """Run every (dataset, method, slice, seed) cell not already on disk, then write reports.

    Ctrl-C stops taking new cells and lets the ones in flight finish (Ctrl-C again abandons
    them); the same command resumes. Runs sharing a results folder split the cells between them.
    """
    from harness.executors import make_executor
    from harness.progress import Progress, silence_libraries
    from harness.datasets import Settings
    from harness.devices import parse_device_option
    from harness.driver import RunInterrupted, run_plan
    from harness.plan import plan_run

    progress = Progress("json" if json_progress else "quiet" if quiet else "human")
    # before plugins and data files load: libraries read their settings when imported (tqdm does)
    silence_libraries(progress.mode)
    pm = get_plugin_manager()
    settings = Settings(
        results_dir=str(results_dir), cache_dir=str(cache_dir or default_cache_dir()),
        data_dirs=tuple(str(d) for d in data_dirs), datasets_cfg_dirs=tuple(str(d) for d in cfg_dirs),
    )
    try:
        seed_list, slice_list = _seed_list(seeds), _slice_list(slices)
        ensemble_specs = _ensemble_specs(ensembles, ensemble_scaling)
        _check_timeout(cell_timeout)
        _check_results_dir(results_dir)
        _check_preset(pm, preset)
        dataset_list = _listed("--datasets", datasets, "comma-separated dataset names")
        method_list = _listed("--methods", methods, "comma-separated method names, or 'all'")
        run_device, method_devices = parse_device_option(devices)
        plan = plan_run(pm, settings, method_list, dataset_list, seed_list, slice_list, preset,
                        list(overrides), label, retry_failed, run_device, method_devices, _unlabeled(unlabeled),
                        _listed("--strategies", strategies, "comma-separated strategy names"), selector)
        cell_executor = make_executor(executor, jobs, scheduler, cell_timeout)
        if ensemble_specs:  # before any cell runs: a member is a method of this run or of the folder's cells
            from harness.ensembles import check_members, method_labels
            from harness.results import load_results

            check_members(ensemble_specs, {spec.label for spec in plan.cells} | method_labels(load_results(results_dir)))
    except USER_ERRORS as exc:
        _fail(exc)
    say = (lambda line: None) if quiet or json_progress else (lambda line: click.echo(line, err=True))
    replaced = _replaced_records(plan)
    if replaced:
        click.echo(f"warning: {replaced} cell record(s) on disk were computed with another cell key (data, config, "
                   "parameters or method version changed) and will be replaced", err=True)
    try:
        summary = run_plan(pm, plan, cell_executor, progress)
    except RunInterrupted as exc:
        done = exc.summary
        click.echo(f"interrupted: {done['ok']} ok and {done['failed']} failed cells saved; "
                   "run the same command again to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)
    except USER_ERRORS as exc:  # e.g. Dask not installed, scheduler unreachable
        _fail(exc)
    say(f"done: {summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} skipped")
    if not no_report:
        _write_reports(pm, results_dir, rule, say, ensembles=ensemble_specs)
    if summary["failed"]:
        sys.exit(1)


def _replaced_records(plan) -> int:
    """How many to-do cells have a record on disk that another cell key produced."""
    from harness.records import read_record

    return sum(
        1 for spec in plan.todo
        if (record := read_record(spec.path())) is not None and record.key_hash != spec.key_hash
    )


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _write_reports(pm, results_dir: Path, rule: str, say=lambda line: click.echo(line, err=True),
                   options=None, ensembles=()) -> None:
    from harness.locks import FileLock
    from harness.rebuild import rebuild_reports
    from harness.records import LOCKS_DIR
    from harness.summary import SummaryOptions

    told: set[str] = set()  # the leaderboard and the significance tests may leave out one cell: said once

    def warn_once(message: str) -> None:
        if message not in told:
            told.add(message)
            _warn(message)

    try:
        with FileLock(results_dir / LOCKS_DIR / "report.lock"):  # runs sharing the folder take turns
            rebuilt = rebuild_reports(results_dir, pm.registry.report_formats, rule, options or SummaryOptions(),
                                      ensembles, warn_once)
        if rebuilt.ensemble_records:
            say(f"wrote {len(rebuilt.ensemble_records)} ensemble cell record(s) under {results_dir / 'cells'}")
        for path in rebuilt.files:
            say(f"wrote {path}")
    except OSError as exc:
        _fail(ValueError(f"{results_dir}: cannot write the reports: {exc.strerror} ({exc.filename})"))
    except HarnessError as exc:
        _fail(exc)


def summary_options(command):
    """The summary's options, shared by report and publish."""
    for option in reversed([
        click.option("--bootstrap-resamples", default=1000, show_default=True, type=int,
                     help="Resamples of the test issues in the paired bootstrap against each column's best method."),
        click.option("--alpha", default=0.05, show_default=True, type=float,
                     help="Level of the one-sided test: above it a method is marked not significantly worse."),
        click.option("--bootstrap-seed", default=0, show_default=True, type=int, help="Seed of the bootstrap resamples."),
        click.option("--target-f1", default=0.7, show_default=True, type=float,
                     help="F1 whose number of training issues the summary estimates from each learning curve."),
        click.option("--target-metric", default="micro_f1", show_default=True, type=click.Choice(["micro_f1", "macro_f1"]),
                     help="Which F1 --target-f1 is."),
    ]):
        command = option(command)
    return command


def _summary_options(bootstrap_resamples: int, alpha: float, bootstrap_seed: int, target_f1: float, target_metric: str):
    from harness.significance import BootstrapSettings
    from harness.summary import SummaryOptions

    try:
        return SummaryOptions(BootstrapSettings(bootstrap_resamples, alpha, bootstrap_seed), target_f1, target_metric)
    except ValueError as exc:  # the two dataclasses check their fields; nothing else runs here
        _fail(exc)


@cli.command()
@rule_option
@with_ensemble_options
@results_option
@summary_options
def report(rule: str, ensembles: tuple[str, ...], ensemble_scaling: str, results_dir: Path, **summary) -> None:
    """Rebuild leaderboard.{md,csv,tex,html}, summary.{md,html,tex} and figures from the cell
    records and their stored arrays; no model runs. Under a rule other than own the files are
    named leaderboard-RULE.*, summary-RULE.*, figures/DATASET-RULE.*, beside those of own.
    --ensemble NAME=a,b,c adds the row ensemble-NAME, combined from the stored scores."""
    from harness.report import rule_suffix

    specs = _ensemble_specs(ensembles, ensemble_scaling)
    if not (results_dir / "cells").is_dir():
        _fail(ValueError(f"{results_dir}: no cell records (expected a 'cells' folder); run 'harness run' first"))
    _write_reports(get_plugin_manager(), results_dir, rule, options=_summary_options(**summary), ensembles=specs)
    click.echo((results_dir / f"summary{rule_suffix(rule)}.md").read_text(encoding="utf-8"))


@cli.command()
@click.option("--methods", default=None, help="As for run (default all, when any run option is given).")
@click.option("--datasets", default=None, help="As for run (default github-issues-datasets).")
@click.option("--seeds", default=None, help="As for run (default 0).")
@click.option("--slices", default=None, help="As for run (default: the dataset config's).")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help="As for run.")
@click.option("--set", "overrides", multiple=True, metavar="METHOD.PARAM=VALUE", help="As for run.")
@click.option("--label", default=None, help="As for run.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="As for run.")
@strategy_options
@unlabeled_option
@results_option
@data_dir_option
@cfg_dir_option
def status(methods, datasets, seeds, slices, preset, overrides, label, cache_dir, strategies, selector, unlabeled,
           results_dir, data_dirs, cfg_dirs) -> None:
    """Done / failed / running / missing cells per dataset and method, and why cells failed.

    Given the run's options (--methods, --datasets, --seeds, --slices, --set, --label), every
    planned cell is counted, so cells not yet run show as missing; otherwise only what is on
    disk is shown. Running cells are those whose lock a live `harness run` holds.
    """
    from tabulate import tabulate

    from harness.datasets import Settings
    from harness.plan import plan_run
    from harness.status import STATES, count_rows, disk_states, planned_states

    planned = any((methods, datasets, seeds, slices, overrides, label, unlabeled, preset != DEFAULT_PRESET,
                   strategies != "random", selector))
    if planned:
        pm = get_plugin_manager()
        settings = Settings(
            results_dir=str(results_dir), cache_dir=str(cache_dir or default_cache_dir()),
            data_dirs=tuple(str(d) for d in data_dirs), datasets_cfg_dirs=tuple(str(d) for d in cfg_dirs),
        )
        try:
            seed_list, slice_list = _seed_list(seeds or "0"), _slice_list(slices)
            _check_preset(pm, preset)
            dataset_list = _listed("--datasets", datasets or "github-issues-datasets", "comma-separated dataset names")
            method_list = _listed("--methods", methods or "all", "comma-separated method names, or 'all'")
            plan = plan_run(pm, settings, method_list, dataset_list, seed_list, slice_list, preset,
                            list(overrides), label, unlabeled=_unlabeled(unlabeled),
                            strategies=_listed("--strategies", strategies, "comma-separated strategy names"),
                            selector=selector)
        except USER_ERRORS as exc:
            _fail(exc)
        states, columns = planned_states(plan), STATES
    else:
        states, columns = disk_states(results_dir), STATES[:-1]
    if not states:
        click.echo(f"{results_dir}: no cells on disk")
        return
    click.echo(tabulate(count_rows(states, columns), headers=["dataset", "method", *columns]))
    if not planned:
        click.echo("(pass the run's --methods/--datasets/--seeds/--slices to count missing cells too)")
    failed = [cell for cell in states if cell.state == "failed"]
    if failed:
        click.echo("\nfailed cells:")
        for cell in failed:
            click.echo(f"  {cell.dataset} {cell.method} slice={cell.slice} seed={cell.seed}: {cell.error}")


def model_command_options(command: Callable) -> Callable:
    """``--cache-dir``, ``--device`` and ``--quiet``, shared by train and tag."""
    for option in reversed([
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="As for run."),
        click.option("--device", default="auto", show_default=True, help="As for run: auto, cpu, cuda, cuda:N or mps."),
        click.option("--quiet", is_flag=True, help="Print only errors and the last line."),
    ]):
        command = option(command)
    return command


@cli.command(name="train")
@click.option("--datasets", "dataset", default="github-issues-datasets", show_default=True, help="The dataset to fit on.")
@click.option("--method", default=None, help="The method to fit and save (one name, as in run).")
@click.option("--ensemble", default=None, metavar="NAME=a,b,c",
              help="Instead of --method: fit these methods and save them as the ensemble NAME, weighed on valid "
                   "as report --ensemble weighs them.")
@click.option("--ensemble-scaling", default=DEFAULT_ENSEMBLE_SCALING, show_default=True, type=click.Choice(ENSEMBLE_SCALINGS),
              help="As for report.")
@click.option("--slice", "slice_name", default="all", show_default=True, help="The training slice: a size or 'all'.")
@click.option("--seed", type=int, default=0, show_default=True, help="The slice seed and the fit's seed, as in run.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help="As for run.")
@click.option("--set", "overrides", multiple=True, metavar="METHOD.PARAM=VALUE", help="As for run.")
@click.option("--label", default=None, help="As for run.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="The model folder to write.")
@click.option("--force", is_flag=True, help="Replace a model folder that is there.")
@model_command_options
@unlabeled_option
@results_option
@data_dir_option
@cfg_dir_option
def train_command(dataset, method, ensemble, ensemble_scaling, slice_name, seed, preset, overrides, label, out_dir, force,
                  cache_dir, device, quiet, unlabeled, results_dir, data_dirs, cfg_dirs) -> None:
    """Fit METHOD on one slice exactly as the benchmark cell does, with its rules chosen on valid,
    and save it with a manifest (versions, parameters, tags, the cell's record and F1) to --out.

    If --results holds the same cell, the manifest says whether it gave the same test predictions.
    """
    from harness.datasets import Settings
    from harness.devices import parse_device_option
    from harness.model_folder import TrainRequest, train, train_ensemble
    from harness.progress import silence_libraries

    silence_libraries("quiet" if quiet else "human")
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    pm = get_plugin_manager()
    settings = Settings(
        results_dir=str(results_dir), cache_dir=str(cache_dir or default_cache_dir()),
        data_dirs=tuple(str(d) for d in data_dirs), datasets_cfg_dirs=tuple(str(d) for d in cfg_dirs),
    )
    try:
        if slice_name != "all" and not (slice_name.isdigit() and int(slice_name) > 0):
            raise click.UsageError(f"--slice {slice_name!r}: expected a positive integer or 'all'")
        _check_preset(pm, preset)
        run_device, _ = parse_device_option([device])
        if (method is None) == (ensemble is None):
            raise click.UsageError("give --method METHOD or --ensemble NAME=a,b,c, not both or neither")
        request = TrainRequest(dataset, method or "", slice_name, seed, preset, tuple(overrides), label, run_device,
                               _unlabeled(unlabeled))
        if ensemble is None:
            trained = train(pm, settings, request, out_dir, force, progress=say)
        else:
            (spec,) = _ensemble_specs((ensemble,), ensemble_scaling)
            trained = train_ensemble(pm, settings, spec, request, out_dir, force, progress=say)
    except USER_ERRORS as exc:
        _fail(exc)
    manifest = trained.manifest
    metrics = manifest["expected_test_metrics"][manifest["rule"]]
    click.echo(f"wrote {out_dir}: {manifest['method']['label']} on {dataset}, slice {manifest['slice']} "
               f"({trained.record.slice.actual_n} issues), seed {seed}; test micro F1 {metrics['micro_f1']:.4f}, "
               f"macro F1 {metrics['macro_f1']:.4f} under rule {manifest['rule']}")
    found = manifest["results"]
    if found["same_test_predictions"] is False:
        click.echo(f"warning: {results_dir} holds this cell, but its stored test predictions differ from this fit's "
                   "(another machine or library version?)", err=True)
    elif found["same_test_predictions"]:
        say(f"the cell in {results_dir} has the same test predictions")


@cli.command(name="tag")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="A folder from harness train.")
@click.option("--file", "input_file", type=click.Path(path_type=Path), default=None,
              help="Issues to tag: a jsonl, csv or parquet file (compressed or not) with the template's fields.")
@click.option("--datasets", "dataset", default=None, help="Tag a split of this dataset instead of a file.")
@click.option("--split", default="unlabeled", show_default=True,
              help="With --datasets: unlabeled (the rows without tags), train, valid or test.")
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path), help="Output: a .csv or .jsonl file.")
@click.option("--rule", default=None, type=click.Choice(RULES),
              help="Decision rule, among those the model carries (default: the cell's own).")
@click.option("--id-field", default=None, help="The input's id column (default: id, else number, else the row number).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Issues per batch.")
@click.option("--force", is_flag=True, help="Overwrite an output file that is there.")
@model_command_options
@data_dir_option
@cfg_dir_option
def tag_command(model_dir, input_file, dataset, split, out_file, rule, id_field, batch_size, force, cache_dir, device,
                quiet, data_dirs, cfg_dirs) -> None:
    """Tag issues with a model folder from harness train: one row per issue with its id, its tags
    and each tag's score, under a rule the benchmark cell chose on valid."""
    from harness.datasets import Settings
    from harness.devices import parse_device_option
    from harness.model_folder import load_model
    from harness.progress import silence_libraries
    from harness.tagging import check_output, dataset_issues, read_issues, resolve_rule, tag_texts, write_tags

    silence_libraries("quiet" if quiet else "human")
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    pm = get_plugin_manager()
    cache = cache_dir or default_cache_dir()
    try:
        if (input_file is None) == (dataset is None):
            raise click.UsageError("give --file FILE or --datasets NAME (with --split), not both or neither")
        check_output(out_file, force)
        run_device, _ = parse_device_option([device])
        model = load_model(model_dir, pm, Path(cache), run_device, progress=say)
        chosen_rule = resolve_rule(model, rule)
        if input_file is not None:
            issues = read_issues(input_file, model.manifest["dataset"]["text"], pm.registry.readers, id_field)
        else:
            settings = Settings(results_dir="results", cache_dir=str(cache), data_dirs=tuple(str(d) for d in data_dirs),
                                datasets_cfg_dirs=tuple(str(d) for d in cfg_dirs))
            issues = dataset_issues(dataset, split, settings, pm.registry.readers)
        say(f"tagging {len(issues.texts)} issues with {model.manifest['method']['label']} (rule {chosen_rule})")
        tagged = tag_texts(model, issues.texts, chosen_rule, batch_size, progress=say)
        write_tags(out_file, issues, model.tags, tagged, model.manifest["dataset"]["label_separator"])
    except USER_ERRORS as exc:
        _fail(exc)
    click.echo(f"wrote {out_file}: {len(issues.texts)} issues, rule {chosen_rule}, "
               f"{tagged.issues_per_second:.1f} issues/s")


@cli.group(name="ls")
def ls() -> None:
    """List installed plugins, methods, query strategies or datasets."""


@ls.command(name="plugins")
def ls_plugins() -> None:
    """Plugins with their source and version, what each registered, and why any failed to load."""
    from tabulate import tabulate

    pm = get_plugin_manager()
    try:
        registries = pm.registry
    except PluginError as exc:
        _fail(exc)
    provides: dict[str, list[str]] = {}
    for kind, registry in (("methods", registries.methods), ("readers", registries.readers),
                           ("report formats", registries.report_formats), ("strategies", registries.strategies)):
        by_plugin: dict[str, list[str]] = {}
        for name, plugin in registry.origins.items():
            by_plugin.setdefault(plugin, []).append(name)
        for plugin, names in by_plugin.items():
            provides.setdefault(plugin, []).append(f"{kind}: {', '.join(names)}")
    rows = [(i.name, i.source, i.version, "; ".join(provides.get(i.name, [])), "ok" if not i.error else f"FAILED: {i.error}")
            for i in pm.plugin_info.values()]
    click.echo(tabulate(rows, headers=["plugin", "source", "version", "registers", "status"]))


@ls.command(name="methods")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True,
              help="Show the parameters a run under this preset would use.")
def ls_methods(preset: str) -> None:
    """Registered methods, the plugin each comes from, and the parameters a run under --preset
    would use, one a line (``# preset`` marks those the preset sets)."""
    from harness.params import build_params

    pm = get_plugin_manager()
    try:
        registry = pm.registry
        _check_preset(pm, preset)
    except (PluginError, click.UsageError) as exc:
        _fail(exc)
    click.echo(f"parameters under preset {preset!r} (change one with --set METHOD.PARAM=VALUE)")
    for name, method_class in sorted(registry.methods.items()):
        plugin = registry.methods.origins[name]
        click.echo(f"\n{name}  version {method_class.version}  plugin {plugin} {pm.plugin_version(plugin) or ''}".rstrip())
        try:
            params = build_params(method_class, preset, {}).model_dump()
        except ParamError as exc:
            click.echo(f"  (preset does not validate: {exc})")
            continue
        defaults = method_class.Params().model_dump()
        for param, value in params.items():
            note = "" if value == defaults.get(param) else "  # preset"
            click.echo(f"  {param} = {value!r}{note}")


@ls.command(name="strategies")
def ls_strategies() -> None:
    """Registered query strategies, the plugin each comes from, what each needs, and its source."""
    from tabulate import tabulate

    pm = get_plugin_manager()
    try:
        registry = pm.registry
    except PluginError as exc:
        _fail(exc)
    rows = []
    for name, strategy in sorted(registry.strategies.items()):
        needs = [need for need, flag in (("scores", strategy.needs_scores), ("texts", strategy.needs_texts)) if flag]
        summary = (strategy.__doc__ or "").strip().split(": ")[0]  # what it is; its docstring cites the source
        rows.append((name, strategy.version, registry.strategies.origins[name], ", ".join(needs) or "-",
                     " ".join(summary.split())))
    click.echo(tabulate(rows, headers=["strategy", "version", "plugin", "needs", "description"], maxcolwidths=[None] * 4 + [70]))


@ls.command(name="datasets")
@cfg_dir_option
def ls_datasets(cfg_dirs) -> None:
    """Dataset configs found, with their source."""
    from tabulate import tabulate

    rows = []
    for name, path in available_configs(list(cfg_dirs)).items():
        try:
            cfg = load_config_file(path)
            rows.append((name, cfg.source.file or cfg.source.url or cfg.source.files or f"hf:{cfg.source.hf}", cfg.description, str(path)))
        except ConfigError as exc:
            rows.append((name, "INVALID", str(exc), str(path)))
    click.echo(tabulate(rows, headers=["dataset", "source", "description", "config"]))


@cli.group(name="dataset")
def dataset() -> None:
    """Write a dataset config for your own data file, and profile any dataset."""


def _echo_profile(name: str, cfg_dirs: list[Path], data_dirs: list[Path], cache_dir: Path | None) -> None:
    """Load dataset ``name`` as run loads it and print its profile."""
    from harness.config import available_configs, load_config
    from harness.data import prepare
    from harness.profiling import profile, render
    from harness.sources import data_dirs as search_dirs

    cfg = load_config(name, cfg_dirs)
    prepared = prepare(cfg, search_dirs(data_dirs), cache_dir or default_cache_dir(), get_plugin_manager().registry.readers)
    click.echo(render(profile(prepared), available_configs(cfg_dirs)[name]))


@dataset.command(name="new")
@click.argument("name")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), help="A .csv, .jsonl or .parquet file (maybe compressed).")
@click.option("--hf", default=None, metavar="OWNER/NAME", help="A Hugging Face Hub dataset instead of a file.")
@click.option("--hf-split", default=None, help="The Hub dataset's split to read, when it has several.")
@click.option("--text", default=None, metavar="COLUMNS", help="Comma-separated text columns (default: the longest free-text ones).")
@click.option("--labels", default=None, metavar="COLUMN", help="The label column (default: detected).")
@click.option("--task", type=click.Choice(["multilabel", "multiclass"]), default=None,
              help="Default: multiclass when the label column holds one label a row.")
@click.option("--encoding", default=None, help="The CSV file's encoding (default: detected).")
@click.option("--delimiter", default=None, help="The CSV file's field separator (default: detected).")
@click.option("--datasets-cfg", "cfg_dir", default=USER_CFG_DIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder to write NAME.yaml into (run searches ./datasets_cfg).")
@click.option("--force", is_flag=True, help="Replace an existing NAME.yaml.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="As for run.")
@data_dir_option
def dataset_new(name, file, hf, hf_split, text, labels, task, encoding, delimiter, cfg_dir, force, cache_dir, data_dirs) -> None:
    """Propose a config NAME.yaml for a data file (text fields, label column and format), write
    it, then load the data as run will and print its profile: rows, splits, tags per split, and
    the tags too rare for the smallest slices."""
    from harness.dataset_wizard import propose, write_proposal
    from harness.sources import data_dirs as search_dirs

    try:
        proposal = propose(name, get_plugin_manager().registry.readers, file, hf, hf_split, _csv(text) or None, labels,
                           task, encoding, delimiter, search_dirs(data_dirs))
        path = write_proposal(proposal, cfg_dir, force)
    except USER_ERRORS as exc:
        _fail(exc)
    click.echo(f"wrote {path}")
    for note in proposal.notes:
        click.echo(f"  {note}")
    folders = [*data_dirs, *([proposal.data_dir] if proposal.data_dir else [])]
    try:
        _echo_profile(name, [cfg_dir], folders, cache_dir)
    except USER_ERRORS as exc:
        _fail(ValueError(f"{exc} (the config is in {path}: edit it, then run 'harness dataset show {name}')"))
    options = "".join(f" --data-dir {folder}" for folder in folders)
    options += "" if cfg_dir.resolve() == USER_CFG_DIR.resolve() else f" --datasets-cfg {cfg_dir}"
    click.echo(f"\nnext: harness run --datasets {name} --methods nb{options}")


@dataset.command(name="show")
@click.argument("name")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="As for run.")
@data_dir_option
@cfg_dir_option
def dataset_show(name, cache_dir, data_dirs, cfg_dirs) -> None:
    """Load dataset NAME as run will and print its profile (see 'dataset new')."""
    try:
        _echo_profile(name, list(cfg_dirs), list(data_dirs), cache_dir)
    except USER_ERRORS as exc:
        _fail(exc)


@cli.command(name="label-next")
@click.option("--datasets", "dataset_name", required=True, metavar="NAME", help="The dataset whose unlabeled issues to choose from.")
@click.option("--method", "method_name", required=True, help="The method fitted on the issues labeled so far.")
@click.option("--strategy", "strategy_name", default="uncertainty", show_default=True,
              help="The query strategy that picks (harness ls strategies).")
@click.option("--n", "n", default=20, show_default=True, type=int, help="How many issues to pick.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The CSV file to write.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fit and of the strategy's draws.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help="As for run.")
@click.option("--set", "overrides", multiple=True, metavar="METHOD.PARAM=VALUE", help="As for run.")
@click.option("--device", default="auto", show_default=True, help="Where torch work runs, as for run.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="As for run.")
@data_dir_option
@cfg_dir_option
def label_next_command(dataset_name, method_name, strategy_name, n, out, seed, preset, overrides, device, cache_dir,
                       data_dirs, cfg_dirs) -> None:
    """Write the N unlabeled issues of a dataset to label next: fit METHOD on its labeled issues
    (train split, valid for its rules) and let STRATEGY pick among the rows without labels. Each
    line holds the issue's id (the data's id field, else its row number), its text fields, the
    strategy's score, the predicted tags and each tag's score. Label them in your data file and
    'harness dataset show NAME' counts them."""
    from harness.datasets import Settings
    from harness.devices import check_device
    from harness.label_next import label_next

    pm = get_plugin_manager()
    settings = Settings(results_dir="results", cache_dir=str(cache_dir or default_cache_dir()),
                        data_dirs=tuple(str(d) for d in data_dirs), datasets_cfg_dirs=tuple(str(d) for d in cfg_dirs))
    try:
        _check_preset(pm, preset)
        known = list(available_configs(list(cfg_dirs)))
        if dataset_name not in known:
            from harness.errors import unknown_name_message

            raise click.UsageError("--datasets: " + unknown_name_message("dataset", dataset_name, known))
        batch = label_next(pm, settings, dataset_name, method_name, strategy_name, n, out, seed, preset, list(overrides),
                           check_device(device), lambda line: click.echo(f"  {line}", err=True))
    except USER_ERRORS as exc:
        _fail(exc)
    click.echo(f"wrote {batch.path}: {batch.picked} of {batch.pool} unlabeled issues, picked by {strategy_name} "
               f"from {method_name} fitted on {batch.labeled} labeled issues")


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
@rule_option
@summary_options
def publish(results_dirs, out_dir: Path, rule: str, **summary) -> None:
    """Write a static leaderboard site from one or more results folders."""
    from harness.publish import PublishError, publish_site

    try:
        site = publish_site(list(results_dirs) or [Path("results")], out_dir, rule, _summary_options(**summary))
    except PublishError as exc:
        _fail(exc)
    except OSError as exc:  # e.g. --out below a file, or a folder not writable
        _fail(ValueError(f"--out {out_dir}: cannot write the site: {exc.strerror} ({exc.filename})"))
    for conflict in site.conflicts:
        click.echo(f"warning: {conflict.describe()}", err=True)
    for note in [*site.mixed_data, *dict.fromkeys(site.problems)]:
        click.echo(f"warning: {note}", err=True)
    from harness.summary import count_phrase

    click.echo(f"wrote {site.index} ({count_phrase(len(site.datasets), 'dataset')}, "
               f"{count_phrase(site.n_records, 'cell record')})")


def main() -> None:
    from harness.progress import hide_library_bars

    hide_library_bars()  # before plugins load and import tqdm
    pm = get_plugin_manager()
    pm.hook.register_commands(cli=cli)
    cli()
