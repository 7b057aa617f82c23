"""Helpers for strategy tests: replies as a SuperNode would send them."""

from __future__ import annotations

import pytest
from flwr.app import Message, Metadata, RecordDict


def reply(content: RecordDict, node: int) -> Message:
    """A train reply from ``node`` carrying ``content``."""
    meta = Metadata(
        run_id=1,
        message_id="",
        src_node_id=node,
        dst_node_id=0,
        reply_to_message_id=f"m{node}",
        group_id="1",
        created_at=0.0,
        ttl=60.0,
        message_type="train",
    )
    return Message(content=content, metadata=meta)


@pytest.fixture
def make_reply():
    """:func:`reply`, as a fixture."""
    return reply
