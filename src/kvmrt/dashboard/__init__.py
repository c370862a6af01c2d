"""``kvmrt``: the full-screen terminal dashboard (Textual).

Only the ``kvmrt`` command imports this package (and Textual with it); the
``kvmrt-*`` tools never do. Every call into kvmrt goes through
:mod:`kvmrt.api`.
"""
