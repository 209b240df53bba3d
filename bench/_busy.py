"""Imported by a node process (``--state bench._busy:BusyState``): one CPU-bound thread.

It stands for a busy actor: a Python thread that computes and so holds the GIL
for up to the switch interval at a time.
"""

from __future__ import annotations

from bench._peers import busy_thread
from dstate_core.testing import TestState

__all__ = ["BusyState"]


class BusyState(TestState):
    """:class:`TestState` under another name, in a process with a busy thread."""

    NAME = "busy_state"


busy_thread()
