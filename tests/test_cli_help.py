"""`spino --help` and every subcommand's help document what they accept (issue 28 point 6)."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys

import pytest

from flows.cli import build_parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for its subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("spino has no subcommands")


def test_every_subcommand_has_help_text() -> None:
    parser = build_parser()
    helped = {a.dest: a.help for a in parser._subparsers._group_actions[0]._choices_actions}
    assert set(helped) == set(_subcommands(parser))
    assert all(text and len(text) > 10 for text in helped.values()), helped


@pytest.mark.parametrize("command", sorted(_subcommands(build_parser())))
def test_help_documents_every_option(command: str) -> None:
    """Each option and positional of each subcommand has its own help line, and --help
    shows it."""
    sub = _subcommands(build_parser())[command]
    text = sub.format_help()
    assert sub.description and len(sub.description) > 10, f"{command} --help: no description"
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[-1] if action.option_strings else action.dest
        assert action.help and action.help is not argparse.SUPPRESS, f"{command} {name}: no help"
        assert name in text, f"{command} --help does not show {name}"
        first_words = action.help.split("(")[0].split("%")[0].strip()[:30]
        assert first_words in " ".join(text.split()), f"{command} {name}: help not shown"


def test_version_is_the_installed_package_version() -> None:
    expected = importlib.metadata.version("spino")
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"spino {expected}"
