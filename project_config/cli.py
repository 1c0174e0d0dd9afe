"""Shared CLI error handling: a user error is one line on stderr and exit code 2."""
import sys


class UserError(Exception):
    """An error caused by the user's input (file, key, value): reported in one line, exit 2."""


def cli_main(main, argv=None):
    """Run ``main(argv)``; turn :class:`UserError` (and its subclasses) into one line + exit 2."""
    try:
        rc = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc or 0)
