"""Process trees on this machine: find them, stop them whole, and pick free ports.

Stopping is by process group (SIGTERM, a grace period, then SIGKILL), never this
process's own group, so that late children (Ray starts its agents late) are stopped too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (from /proc)."""
    out, todo = [], [pid]
    while todo:
        for kid in _children(todo.pop()):
            out.append(kid)
            todo.append(kid)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_tree(pid: int, grace: float = 10.0) -> None:
    """SIGTERM ``pid`` and its descendants (by process group), then SIGKILL leftovers."""
    stop_trees([pid], grace)


def stop_trees(pids: list[int], grace: float = 10.0) -> None:
    """Stop several process trees at once: SIGTERM every process group in them, wait up
    to ``grace`` seconds for all of them together, then SIGKILL whatever is left."""
    tree = [p for pid in pids for p in [pid, *descendants(pid)]]
    groups = set()
    for p in tree:
        try:
            groups.add(os.getpgid(p))
        except ProcessLookupError:
            pass
    groups.discard(os.getpgrp())  # never our own group: only the trees we started
    for g in groups:
        try:
            os.killpg(g, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.1)
    # SIGKILL what is left, by group too: a process started while the others were
    # stopping (Ray starts its agents late) is in no list, but it is in its parent's group.
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for p in tree:
        if _alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


@contextlib.contextmanager
def _uninterrupted():
    """Hold Ctrl-C and SIGTERM while processes are being stopped (a second Ctrl-C would
    leave some running); they take effect once the block ends."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in handlers:
        signal.signal(s, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        if received:
            raise KeyboardInterrupt
