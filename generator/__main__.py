"""`python -m generator` is the `llm-blueprint` command; run() is also the console script's entry point.

Importing the CLI (copier, questionary, Jinja) takes a second or more. Ctrl-C during that time must end as
quietly as Ctrl-C later on, so the import happens inside the handler, and this module imports nothing heavy.
"""

import os
import sys


def run() -> None:
    try:
        from generator.cli import main

        code = main()
    except KeyboardInterrupt:
        print("\nllm-blueprint: cancelled", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # the reader of our output went away (`llm-blueprint layers | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is quiet
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    run()
