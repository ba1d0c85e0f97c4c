"""The hooks a plugin may implement. Every hook here is documented in docs/hooks.md."""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("harness")


@hookspec
def register_methods(register: Callable[[type], None]) -> None:
    """Register method classes: call ``register(MethodClass)`` once per method.

    A method class subclasses :class:`harness.methods.Method`.
    """


@hookspec
def register_dataset_loaders(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register readers for extra file formats: ``register("feather", reader)``.

    ``reader(stream, name, source)`` gets a binary stream, a name for error messages and the
    dataset's ``SourceConfig``; it returns a list of row dicts or a pandas DataFrame. Files whose
    name ends in ``.feather`` (or whose config sets ``source.format: feather``) use it.
    """


@hookspec
def register_report_formats(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register extra leaderboard writers: ``register("json", writer)``.

    ``writer(table: pandas.DataFrame, path: pathlib.Path)`` writes ``leaderboard.<name>``.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands to the ``harness`` command group: ``cli.add_command(cmd)``."""


@hookspec
def before_run(plan: Any) -> None:
    """Called once in the driver before the first cell runs, with the run plan."""


@hookspec
def after_cell(record: dict) -> None:
    """Called in the driver after each cell record is written (status ``ok`` or ``failed``)."""


@hookspec
def on_cell_error(record: dict) -> None:
    """Called in the driver after a cell failed; ``record["error"]`` holds the message."""


@hookspec
def after_run(summary: dict) -> None:
    """Called once in the driver after the last cell, with counts of done, skipped and failed."""
