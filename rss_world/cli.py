"""What the ``python -m rss_world.<verb>`` entry points share: bad input reported in one line, exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise ``ValueError`` (reported by :func:`run_command`) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                command: Callable[[argparse.Namespace], object]) -> int:
    """Parse ``argv`` and call ``command(args)``; return the exit status.

    Bad input, from the parser or a ``ValueError`` (or ``FileNotFoundError``: a file the user named is missing) of
    the command, prints ``<prog>: error: <first line>`` on stderr and returns 2. The library validates everything
    before it starts work, so such an error is bad input.
    """
    try:
        command(parser.parse_args(argv))
    except (ValueError, FileNotFoundError) as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        print(f"{parser.prog}: error: {lines[0]}", file=sys.stderr)
        return 2
    return 0
