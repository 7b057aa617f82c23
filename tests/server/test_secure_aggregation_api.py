"""deploy/guides/secure-aggregation.md says why FedSynth runs without SecAgg+: in the
pinned Flower it needs the legacy strategy API. This checks that reason still holds, so
that an upgrade that lifts it fails here and puts the decision up for review."""

from __future__ import annotations

import inspect

import pytest


def test_secaggplus_still_needs_the_legacy_context_and_strategy():
    from flwr.app import Context, RecordDict
    from flwr.server.workflow import SecAggPlusWorkflow

    source = inspect.getsource(SecAggPlusWorkflow)
    assert "LegacyContext" in source and "aggregate_fit" in source
    context = Context(
        run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}
    )  # what a Message API ServerApp receives
    with pytest.raises(TypeError, match="LegacyContext"):
        SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2)(grid=None, context=context)
