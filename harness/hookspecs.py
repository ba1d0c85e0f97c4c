"""The hooks a plugin may implement. Every hook here is documented in docs/hooks.md and has a
test in tests/test_hooks.py (a test there fails when one lacks it).

Argument types are imported under TYPE_CHECKING only, as pytest and tox do: the hook module
stays cheap to import, and importing the planner or the records here would make a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from harness.methods import Method
    from harness.plan import RunPlan
    from harness.records import CellRecord
    from harness.report import Writer
    from harness.sources import Reader
    from harness.strategies import Strategy

hookspec = pluggy.HookspecMarker("harness")
hookimpl = pluggy.HookimplMarker("harness")  # a plugin takes it from the package: ``from harness import hookimpl``


@hookspec
def register_methods(register: Callable[[type[Method]], None]) -> None:
    """Register method classes: call ``register(MethodClass)`` once per method.

    A method class subclasses :class:`harness.methods.Method`.
    """


@hookspec
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    """Register query strategies: call ``register(StrategyClass)`` once per strategy.

    A strategy class subclasses :class:`harness.strategies.Strategy` (``from harness import
    Strategy``); ``harness run --strategies NAME`` and ``harness label-next --strategy NAME`` use it.
    """


@hookspec
def register_dataset_loaders(register: Callable[[str, Reader], None]) -> None:
    """Register readers for file formats: ``register("feather", reader)``.

    ``reader(stream, name, source)`` gets a binary stream (already decompressed), a name for
    error messages and the dataset's ``SourceConfig``; it returns a list of row dicts or a pandas
    DataFrame. Files whose name ends in ``.feather`` (or ``.feather.gz`` and other compressions,
    or whose config sets ``source.format: feather``) use it.
    """


@hookspec
def register_report_formats(register: Callable[[str, Writer], None]) -> None:
    """Register leaderboard writers: ``register("json", writer)``.

    ``writer(table: pandas.DataFrame, path: pathlib.Path)`` writes ``leaderboard.<name>``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``harness`` command group: ``cli.add_command(cmd)``."""


@hookspec
def before_run(plan: RunPlan) -> None:
    """Called once in the driver before the first cell runs, with the run plan."""


@hookspec
def after_cell(record: CellRecord) -> None:
    """Called in the driver after each cell record is written (status ``ok`` or ``failed``)."""


@hookspec
def on_cell_error(record: CellRecord) -> None:
    """Called in the driver after a cell failed; ``record.error`` holds the message."""


@hookspec
def after_run(summary: dict[str, int]) -> None:
    """Called once in the driver after the last cell, with counts of done, skipped and failed."""
