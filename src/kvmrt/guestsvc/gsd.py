"""kvmrt-gsd's command line, read before the daemon's modules load.

``kvmrt-gsd --help``, ``--version`` and a bad option are answered here, as
fast as Python starts; :func:`kvmrt.guestsvc.daemon.run` (the config
parser, the host readers, tracefs) is imported only to serve.
"""

from __future__ import annotations

import argparse
import sys

from kvmrt.config import DEFAULT_PATH
from kvmrt.guestsvc import SYSLOG_SOCKET


class _Version(argparse.Action):
    """``--version``: the installed package's version, read only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        import importlib.metadata

        print(f"kvmrt-gsd {importlib.metadata.version('kvmrt')}")   # stdout, as argparse's
        parser.exit()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kvmrt-gsd", description="kvmrt-gsd: the host side of guest services for every "
        "VM, in one process.")
    parser.add_argument("--version", action=_Version)
    parser.add_argument("-f", "--file", default=DEFAULT_PATH, help="config file")
    parser.add_argument("--syslog-socket", default=SYSLOG_SOCKET,
                        help=f"the system log's socket (default {SYSLOG_SOCKET})")
    parser.add_argument("--no-trace", action="store_true", help="no trace_marker records")
    parser.add_argument("--detach", action="store_true",
                        help="start the daemon in a new session and return")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.detach:
        import subprocess

        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--detach"]
        subprocess.Popen([sys.executable, "-m", "kvmrt.guestsvc.gsd", *rest],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        return 0
    from kvmrt.guestsvc.daemon import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
