"""Child processes of the stack: started with their output prefixed, stopped TERM-then-KILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.stack.plan import ChildSpec, prefix_line

Output = Callable[[str], None]


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None] = field(repr=False)
    stopping: bool = False

    @property
    def name(self) -> str:
        return self.spec.name


async def start_child(spec: ChildSpec, out: Output = _print_line) -> Child:
    # A session of its own: a Ctrl-C on the terminal reaches the runner only, which then stops
    # the children itself, in order.
    process = await asyncio.create_subprocess_exec(
        *spec.argv, env=dict(spec.env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    pump = asyncio.create_task(_pump(spec.name, process, out), name=f"pump-{spec.name}")
    return Child(spec=spec, process=process, pump=pump)


async def _pump(name: str, process: asyncio.subprocess.Process, out: Output) -> None:
    assert process.stdout is not None
    while True:
        raw = await process.stdout.readline()
        if not raw:
            return
        out(prefix_line(name, raw.decode(errors="replace")))


async def wait_first_exit(children: Sequence[Child]) -> Child:
    """The first child to exit (for any reason)."""
    waits = {asyncio.ensure_future(child.process.wait()): child for child in children}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return waits[next(iter(done))]
    finally:
        for waiter in waits:
            waiter.cancel()


def _signal_group(child: Child, sig: signal.Signals) -> None:
    # The service may have children of its own (uvicorn workers): signal its whole group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, sig)


async def stop_children(children: Sequence[Child], grace_seconds: float = 10.0,
                        out: Output = _print_line) -> None:
    """SIGTERM every child still running (the api first: no new work comes in), wait up to
    ``grace_seconds``, then SIGKILL what is left."""
    running = [c for c in reversed(children) if c.process.returncode is None]
    for child in running:
        child.stopping = True
        _signal_group(child, signal.SIGTERM)
    if running:
        _, pending = await asyncio.wait([asyncio.ensure_future(c.process.wait()) for c in running],
                                        timeout=grace_seconds)
        for waiter in pending:
            waiter.cancel()
    for child in running:
        if child.process.returncode is None:
            out(prefix_line(child.name, f"did not stop in {grace_seconds:.0f}s: SIGKILL"))
            _signal_group(child, signal.SIGKILL)
            await child.process.wait()
    for child in children:
        # Drain what the child wrote before it exited.
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(child.pump, timeout=2.0)
