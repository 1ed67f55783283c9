"""Command line: a table of subcommands. Also runs as `python -m <package>`.

This file names no command. Every module of the package that offers one registers it when it is imported, with
`@command(...)` on the function that runs it (its name, help and flags), and a module may add flags to another's
command with `@flags_for(...)`. So a capability brings its command along, and a repository without it has
neither the code nor the command. `main` imports the package's modules, builds the parser from the table, runs
the command, and turns errors into one line on stderr and an exit code:
2 bad input (an unknown flag, a missing config, a bad value), 1 a failure (an exception that sets `exit_code`
says which code it means), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import sys
from typing import Callable

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

Flags = Callable[[argparse.ArgumentParser], None]


@dataclasses.dataclass
class Command:
    name: str
    help: str
    description: str  # the --help text: what it does, then examples
    flags: Flags
    run: Callable[[argparse.Namespace], int | None]  # None: success
    extra_flags: list[Flags] = dataclasses.field(default_factory=list)  # added by other modules


COMMANDS: dict[str, Command] = {}
_PENDING_FLAGS: dict[str, list[Flags]] = {}  # flags_for a command whose module is not imported yet


def command(name: str, help: str, description: str, flags: Flags = lambda p: None):
    """Register the decorated function as the subcommand `name`; it gets the parsed arguments."""

    def register(run: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int | None]:
        COMMANDS[name] = Command(name, help, description, flags, run, _PENDING_FLAGS.pop(name, []))
        return run

    return register


def flags_for(name: str):
    """Register the decorated function as more flags of command `name` (a capability's options on a shared
    command, such as a fine-tuning method's hyperparameters)."""

    def register(flags: Flags) -> Flags:
        target = COMMANDS[name].extra_flags if name in COMMANDS else _PENDING_FLAGS.setdefault(name, [])
        target.append(flags)
        return flags

    return register


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    return _float_above(text, 0.0, inclusive=False)


def non_negative_float(text: str) -> float:
    return _float_above(text, 0.0, inclusive=True)


def _float_above(text: str, bound: float, inclusive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (value >= bound if inclusive else value > bound):  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number {'>=' if inclusive else '>'} {bound:g}, got {value}")
    return value


def load_package() -> dict[str, Command]:
    """Import every module of this package, so that each registers its commands, flags and micro-experiments.

    A module that needs a package which is not installed (an optional extra, such as the server's FastAPI) is
    left out; the command that uses it lives in a module without that import and says what to install."""
    package = sys.modules[__package__]
    for module in pkgutil.iter_modules(package.__path__):
        if module.name == "__main__":  # `python -m`'s entry point: importing it runs the command line
            continue
        try:
            importlib.import_module(f"{__package__}.{module.name}")
        except ModuleNotFoundError as e:
            if e.name is None or e.name.split(".")[0] == __package__:
                raise
    return COMMANDS


def build_parser() -> argparse.ArgumentParser:
    from .config import COMMAND  # here, not at the top: config.py registers a command through this module

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=COMMAND, formatter_class=fmt, description="Train a small language model from scratch.",
        epilog=f"quick start:\n  {COMMAND} train --config tiny\n  {COMMAND} generate --prompt 'ROMEO:'\n\n"
               f"run '{COMMAND} <command> --help' for the options of each command")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for c in sorted(load_package().values(), key=lambda c: c.name):
        p = sub.add_parser(c.name, help=c.help, description=c.description, formatter_class=fmt)
        for add in [c.flags, *c.extra_flags]:
            add(p)
        p.set_defaults(handler=c.run)  # not `run`: commands have a --run flag
    return parser


def main(argv: list[str] | None = None) -> int:
    from .config import COMMAND

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except (FileNotFoundError, ValueError) as e:  # ConfigError is a ValueError
        print(f"{COMMAND}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as e:
        code = getattr(e, "exit_code", None)  # checkpoint.py: run locked, disk full, preempted, ...
        if code is None:
            raise
        print(f"{COMMAND}: {getattr(e, 'label', 'error')}: {e}", file=sys.stderr)
        return code
