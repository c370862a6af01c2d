"""The console scripts answer ``--help`` and unknown options as click does.

kvmrt.commands.entry answers them from a table without importing click
(issue 14: ``--help`` within 3x ``python -c pass``). These tests hold the
table to the click commands: it must be current, and for command lines
generated from each tool's own options, any answer it gives must be byte
for byte click's (output, error output, exit status); where it is not sure,
it must leave the line to click.
"""

from __future__ import annotations

import copy
import importlib
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmrt.commands import entry, helpgen
from kvmrt.commands.helptable import TABLE

TOOLS = sorted(entry.TOOLS)


def test_the_table_is_current():
    assert helpgen.render() == helpgen.TARGET.read_text(), (
        "run: python -m kvmrt.commands.helpgen")


def _inert(tool: str) -> click.Command:
    """The tool's click command with a body that does nothing."""
    command = copy.copy(importlib.import_module(entry.TOOLS[tool]).main)
    command.callback = lambda **_kwargs: None
    return command


def click_answer(tool: str, argv: list[str], columns: int) -> tuple[int, str, str]:
    """Click's own answer, in process (CliRunner forces 80 columns: the
    formatter width is given as click computes it for a terminal of
    ``columns``; test_widths_are_clicks checks that rule in real processes)."""
    command = _inert(tool)
    most = command.context_settings.get("max_content_width") or 80
    result = CliRunner().invoke(command, argv, prog_name=tool,
                                terminal_width=max(min(columns, most) - 2, 50))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def words(tool: str) -> st.SearchStrategy[list[str]]:
    spec = TABLE[tool]
    known = sorted(spec["long"]) + sorted(spec["short"])
    shorts = [o[1] for o in spec["short"]]
    unknown = ["--hel", "--bogus", "--fil", "-x", "-Z", "--all=1", "--help=yes", "--file=",
               "-hx", "-fvalue", "-f=v", "---", "-"]
    cluster = st.lists(st.sampled_from(shorts + ["x", "h"]), min_size=1, max_size=3).map(
        lambda cs: "-" + "".join(cs))
    word = st.one_of(st.sampled_from(known), st.sampled_from(unknown), cluster,
                     st.sampled_from(["vm1", "rt", "--", "-h", "--help", "5", "a=b"]),
                     st.sampled_from(known).map(lambda o: o + "=v"))
    return st.lists(word, max_size=6)


@pytest.mark.parametrize("tool", TOOLS)
@settings(max_examples=150)
@given(data=st.data())
def test_every_answer_is_clicks(tool, data):
    argv = data.draw(words(tool))
    columns = data.draw(st.sampled_from([80, 100, 132, 60, 40]))
    mine = entry.answer(tool, argv, columns)
    if mine is not None:
        assert mine == click_answer(tool, argv, columns), argv


@pytest.mark.parametrize("tool", TOOLS)
def test_help_and_unknown_options_are_answered(tool):
    """The common cases really take the fast path (not left to click)."""
    for argv in (["--help"], ["-h"], ["vm1", "--help"], ["--no-such-option"], ["-x"],
                 ["--hel"]):
        mine = entry.answer(tool, argv, 80)
        assert mine is not None, argv
        assert mine == click_answer(tool, argv, 80), argv


def test_what_needs_click_is_left_to_click():
    # a value option with no value, a flag given a value, --version, a narrow
    # terminal, and --help as the value of -f
    for argv, columns in ((["-f"], 80), (["--all=1", "--help"], 80), (["--version"], 80),
                          (["--help"], 120), (["-f", "--help"], 80)):
        if argv == ["--help"]:
            assert entry.answer("kvmrt-boot", argv, 70) is None      # width 68: not in the table
            continue
        assert entry.answer("kvmrt-boot", argv, columns) is None, argv


def test_the_console_script_answers_without_click(tmp_path: Path):
    """As a user runs it: the installed script, a pipe, COLUMNS unset."""
    script = Path(sys.executable).parent / "kvmrt-boot"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    probe = ("import runpy, sys; sys.argv = [%r, '--help'];\n"
             "try: runpy.run_path(%r, run_name='__main__')\n"
             "except SystemExit: pass\n"
             "print('click' in sys.modules, file=sys.stderr)") % (str(script), str(script))
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.stderr.strip() == "False"
    assert proc.stdout == click_answer("kvmrt-boot", ["--help"], 80)[1]


@pytest.mark.parametrize("columns", [None, 40, 80, 99, 100, 132])
def test_widths_are_clicks(columns):
    """The width rule, against click in a real process (a pipe, COLUMNS set or not)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    for tool, argv in (("kvmrt-boot", ["--help"]), ("kvmrt", ["--help"]),
                       ("kvmrt-stat", ["--bogus"])):
        code = (f"from {entry.TOOLS[tool]} import main; "
                f"main({argv!r}, prog_name={tool!r})")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=60)
        mine = subprocess.run([sys.executable, "-c", f"from kvmrt.commands.entry import run; "
                               f"run({tool!r}, {argv!r}, {tool!r})"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert (mine.returncode, mine.stdout, mine.stderr) == \
            (proc.returncode, proc.stdout, proc.stderr), (tool, columns)
