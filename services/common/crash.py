"""Crash points for fault tests: ``CRASH_AT=<point>`` makes the process die there, like kill -9.

The points are named where the code passes them (``crash_point("executor.after_intent")``), so
the fault suite reaches every step of a run without editing code.
"""

from __future__ import annotations

import os
import signal
import sys

_target = os.environ.get("CRASH_AT", "")


def crash_point(name: str) -> None:
    if _target and _target == name:
        sys.stderr.write(f"CRASH_AT={name}: killing this process now\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
