"""The config file: its location, format, model and set types.

``DEFAULT_PATH`` lives here, not in :mod:`kvmrt.config.file`, so that a
tool's ``--help`` can name it without loading the parser.
"""

DEFAULT_PATH = "/etc/kvmrt.cfg"
