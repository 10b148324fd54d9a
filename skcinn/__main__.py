"""Command line: ``python -m skcinn demo [options]``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skcinn`` command."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("demo",):
        print("usage: python -m skcinn demo [--help]", file=sys.stderr)
        return 2
    from .demo import run

    run(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
