"""`python -m generator` is the `llm-blueprint` command."""

from generator.cli import run

run()
