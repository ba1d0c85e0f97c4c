"""``python -m harness``: the ``harness`` command line, for an environment whose scripts folder
is not on PATH."""

from harness.cli import main

if __name__ == "__main__":
    main()
