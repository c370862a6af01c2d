"""The console scripts: ``--help`` and unknown options answered without click.

Importing click costs about four times Python's own start-up, so a tool
that imports it cannot answer ``--help`` within 3x ``python -c pass``
(issue 14). Each console script therefore starts here. When the command
line asks for help, or names an option the tool does not have, the answer
is printed from :mod:`kvmrt.commands.helptable`, the text click itself
renders for the tool, written by ``python -m kvmrt.commands.helpgen``.
Every other command line, and any case this module is not sure of (a
narrow terminal, an option that wants a value and has none, ``--version``,
shell completion, another program name), goes to the click command
unchanged, which then parses it itself.

The scan below follows click's parser (click/parser.py): options and
arguments may be interspersed, ``--`` ends the options, ``--name=value``
and ``-fVALUE`` carry their value, short flags may be clustered, and the
first unknown option stops the parse. tests/test_entry.py checks that the
table is current and that, for generated command lines, every answer given
here is byte for byte the one click gives.
"""

from __future__ import annotations

import os
import sys

# Tool name -> the module whose ``main`` is its click command.
TOOLS = {
    "kvmrt": "kvmrt.dashboard.app",
    "kvmrt-boot": "kvmrt.commands.boot",
    "kvmrt-edit-config": "kvmrt.commands.edit_config",
    "kvmrt-import": "kvmrt.commands.import_domains",
    "kvmrt-show-config": "kvmrt.commands.show_config",
    "kvmrt-show-host": "kvmrt.commands.show_host",
    "kvmrt-shutdown": "kvmrt.commands.shutdown",
    "kvmrt-stat": "kvmrt.commands.stat",
    "kvmrt-sync-config": "kvmrt.commands.sync_config",
    "kvmrt-validate-config": "kvmrt.commands.validate_config",
    "kvmrt-validate-host": "kvmrt.commands.validate_host",
}


def terminal_columns() -> int:
    """The columns :func:`shutil.get_terminal_size` reports (which click uses)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns


def _no_such_option(spec: dict, usage: str, name: str,
                    suggest: bool) -> tuple[int, str, str]:
    """click's usage error for an unknown option (with "Did you mean" for a
    long one, from the tool's long options)."""
    message = f"No such option {name!r}."
    if suggest:
        from difflib import get_close_matches

        close = sorted(get_close_matches(name, spec["long"]))
        if len(close) == 1:
            message += f" Did you mean {close[0]!r}?"
        elif close:
            message += f" (Did you mean one of: {', '.join(repr(c) for c in close)}?)"
    return 2, "", f"{usage}\nTry '{spec['prog']} --help' for help.\n\nError: {message}\n"


def scan(spec: dict, argv: list[str]) -> str | None:
    """What click's parser would do first that this module can answer.

    ``"help"`` when the line asks for help and parses, ``"unknown:NAME"``
    (``"unknown+:NAME"`` with suggestions) at the first unknown option, and
    None when click must decide (no help asked, or a case not modelled).
    Values: an option's entry is its number of values, None when only click
    may handle it.
    """
    long, short, helps = spec["long"], spec["short"], spec["help"]
    wants_help = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            break
        if arg[:1] != "-" or len(arg) == 1:
            continue                                   # an argument
        name, eq, _value = arg.partition("=")
        if name in long:
            count = long[name]
            if count is None or (eq and count == 0):
                return None
            needed = count - 1 if eq else count
            if len(argv) - i < needed:
                return None                            # click: "requires an argument"
            i += needed
            wants_help = wants_help or name in helps
            continue
        if arg[:2] == "--":
            return f"unknown+:{name}"
        for pos in range(1, len(arg)):                 # a cluster of short options
            opt = "-" + arg[pos]
            if opt not in short:
                return f"unknown:{opt}"
            count = short[opt]
            if count is None:
                return None
            if count:
                needed = count - (1 if pos + 1 < len(arg) else 0)
                if len(argv) - i < needed:
                    return None
                i += needed
                break
            wants_help = wants_help or opt in helps
    return "help" if wants_help else None


def answer(tool: str, argv: list[str], columns: int | None = None) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) as click would give them, or None."""
    from kvmrt.commands.helptable import TABLE

    spec = TABLE[tool]
    width = max(min(terminal_columns() if columns is None else columns, spec["max_width"]) - 2, 50)
    if width not in spec["texts"]:
        return None
    found = scan(spec, argv)
    if found is None:
        return None
    help_text, usage = spec["texts"][width]
    if found == "help":
        return 0, help_text + "\n", ""
    kind, name = found.split(":", 1)
    return _no_such_option(spec, usage, name, kind == "unknown+")


def run(tool: str, args: list[str] | None = None, prog_name: str | None = None,
        **extra: object) -> object:
    """Answer from the table when it can, else run the tool's click command."""
    argv = sys.argv[1:] if args is None else list(args)
    name = prog_name or os.path.basename(sys.argv[0])
    completing = "_" + tool.upper().replace("-", "_") + "_COMPLETE"
    if name == tool and completing not in os.environ:
        found = answer(tool, argv)
        if found is not None:
            code, out, err = found
            sys.stdout.write(out)
            sys.stderr.write(err)
            sys.stdout.flush()
            sys.exit(code)
    import importlib

    return importlib.import_module(TOOLS[tool]).main(args, prog_name=prog_name, **extra)


def _entry(tool: str):
    def main(args: list[str] | None = None, prog_name: str | None = None,
             **extra: object) -> object:
        return run(tool, args, prog_name, **extra)

    main.__name__ = main.__qualname__ = tool.replace("-", "_")
    main.__doc__ = f"The {tool} console script."
    return main


dashboard = _entry("kvmrt")
boot = _entry("kvmrt-boot")
edit_config = _entry("kvmrt-edit-config")
import_domains = _entry("kvmrt-import")
show_config = _entry("kvmrt-show-config")
show_host = _entry("kvmrt-show-host")
shutdown = _entry("kvmrt-shutdown")
stat = _entry("kvmrt-stat")
sync_config = _entry("kvmrt-sync-config")
validate_config = _entry("kvmrt-validate-config")
validate_host = _entry("kvmrt-validate-host")
