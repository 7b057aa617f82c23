from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from server.grid import PromptGrid


class _SlowRepliesGrid:
    """Stands in for Flower's Grid: replies become available after a delay."""

    def __init__(self, delay: float) -> None:
        self.ready_at = time.monotonic() + delay

    def push_messages(self, messages):
        return ["m1", "m2"]

    def pull_messages(self, ids):
        if time.monotonic() < self.ready_at:
            return []
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=i)) for i in ids]


def test_replies_are_collected_promptly():
    grid = PromptGrid(_SlowRepliesGrid(0.3), interval=0.05)
    start = time.monotonic()
    replies = list(grid.send_and_receive([], timeout=5))
    assert len(replies) == 2 and time.monotonic() - start < 1.0


def test_timeout_returns_what_arrived():
    grid = PromptGrid(_SlowRepliesGrid(10), interval=0.05)
    start = time.monotonic()
    assert list(grid.send_and_receive([], timeout=0.3)) == []
    assert time.monotonic() - start < 1.0
    with pytest.raises(ValueError, match="interval"):
        PromptGrid(_SlowRepliesGrid(0), interval=0)
