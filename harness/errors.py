"""The base class of the harness's user errors, and one-line messages shared by the modules
that validate user input."""

from __future__ import annotations

import difflib

from pydantic import ValidationError


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """``unknown method 'nbb'; did you mean 'nb'? (known: ...)``"""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (known: {', '.join(sorted(known)) or 'none'})"


def validation_problems(exc: ValidationError, prefix: str = "field '", suffix: str = "'") -> str:
    """A pydantic error as one line: ``field 'a.b': <message> (got <value>); ...``.

    ``prefix``/``suffix`` frame each location (``nb.`` and no quotes for method parameters).
    The offending value is shown unless the field is missing.
    """
    return "; ".join(
        # repr without its quotes: a key holding a newline stays on the one line
        f"{prefix}{repr('.'.join(str(p) for p in err['loc']))[1:-1]}{suffix}: {err['msg']}"
        + (f" (got {err['input']!r})" if err["type"] != "missing" else "")
        for err in exc.errors()
    )


class HarnessError(ValueError):
    """Bad input that the harness reports as one line (a config, a data file, an option, a
    parameter, a results folder); the command line shows any other exception as the bug it is.

    A ValueError, so that code (and tests) that caught the ValueErrors raised before still do.
    """
