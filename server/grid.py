"""A Grid that collects replies promptly.

Flower's deployment Grid checks for replies every 3 seconds; with a handful of sites and
rounds of a few seconds that idle wait is a large share of each round. ``PromptGrid``
delegates everything to Flower's Grid and only re-implements ``send_and_receive`` on its
public ``push_messages`` / ``pull_messages`` with a shorter poll interval.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid


class PromptGrid(Grid):
    """Wraps a Grid; ``send_and_receive`` polls every ``interval`` seconds.

    Args:
        inner: the Grid Flower handed to the ServerApp.
        interval: seconds between reply checks (> 0).
    """

    def __init__(self, inner: Grid, interval: float = 0.1) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval}")
        self._inner, self._interval = inner, interval

    @property
    def run(self):
        return self._inner.run

    def set_run(self, run_id):
        return self._inner.set_run(run_id)

    def create_message(self, *args, **kwargs):
        return self._inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self._inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages``; return the replies that arrive within ``timeout`` seconds."""
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending and (deadline is None or time.monotonic() < deadline):
            got = list(self.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if pending:
                time.sleep(self._interval)
        return replies
