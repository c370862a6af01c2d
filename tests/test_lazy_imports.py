"""``--help`` and argument errors of every tool start without click, libvirt,
lxml, the host readers or the tuning code (issue 14): the console script
answers ``--help`` and unknown options from a table (kvmrt.commands.entry),
and a command module imports the heavy modules where its body uses them,
so that a mistyped option is answered about as fast as Python starts.

Each case runs in a fresh interpreter, as the console script does, and
reads ``sys.modules`` after the answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

# What only a command body may import (prefixes: libvirtmod, kvmrt.hostcheck):
# also click and Textual, and the config parser, whose regular expressions and
# tempfile cost as much as click itself.
HEAVY = ("click", "textual", "libvirt", "lxml", "kvmrt.tuning", "kvmrt.host", "kvmrt.libvirt_sync",
         "kvmrt.config.file", "kvmrt.config.inifile", "kvmrt.config.model")

TOOLS = sorted((ep.name, ep.value) for ep in entry_points(group="console_scripts")
               if ep.value.startswith("kvmrt.commands."))

PROBE = """
import json, sys
from {module} import {function} as main
try:
    main({argv!r}, prog_name={tool!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.startswith({heavy!r}))
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _probe(tool: str, target: str, argv: list[str]) -> tuple[str, dict]:
    module, function = target.split(":")
    code = PROBE.format(module=module, function=function, argv=argv, tool=tool,
                        heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    *shown, last = proc.stderr.splitlines()
    return proc.stdout + "\n".join(shown), json.loads(last)


def test_every_tool_is_covered():
    assert len(TOOLS) == 11, TOOLS     # the ten tools and the dashboard


@pytest.mark.parametrize("tool,target", TOOLS, ids=[t for t, _ in TOOLS])
def test_help_imports_no_heavy_module(tool, target):
    out, found = _probe(tool, target, ["--help"])
    assert found["code"] == 0
    assert f"Usage: {tool} [OPTIONS]" in out
    assert found["heavy"] == []


@pytest.mark.parametrize("tool,target", TOOLS, ids=[t for t, _ in TOOLS])
def test_argument_error_imports_no_heavy_module(tool, target):
    out, found = _probe(tool, target, ["--no-such-option"])
    assert found["code"] == 2
    assert "Error: No such option '--no-such-option'" in out
    assert found["heavy"] == []


@pytest.mark.parametrize("argv,code", [(["--help"], 0), (["--no-such-option"], 2),
                                       (["--version"], 0)])
def test_gsd_answers_without_the_daemon_modules(argv, code):
    """kvmrt-gsd (argparse) reads its command line before the daemon loads."""
    probe = (f"import json, sys\nfrom kvmrt.guestsvc.gsd import main\n"
             f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
             f"heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}) "
             f"or m == 'kvmrt.guestsvc.daemon')\n"
             f"print(json.dumps({{'code': code, 'heavy': heavy}}), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    found = json.loads(proc.stderr.splitlines()[-1])
    assert (found["code"] or 0) == code
    assert found["heavy"] == []
    # help and version on stdout, an error on stderr (as argparse's own actions)
    assert "kvmrt-gsd" in (proc.stdout if code == 0 else proc.stderr)
