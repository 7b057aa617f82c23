"""The two reference points a federated result is read against, on the same data.

* **local-only**: each site trains alone on its own training split;
* **centralised**: one model trains on all sites' training splits pooled.

Both start from the same initial weights as the federated run and train for the same
number of passes over the data (``num-server-rounds × local-epochs`` epochs), with the
same augmentation, and are evaluated on the same held-out set. Pooling is possible only
where one party holds every site's data: the demo and the benchmarks, never a real
consortium.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from common.config import RunSettings
from common.data.arrays import SiteArrays
from common.seg.training import evaluate, train

logger = logging.getLogger(__name__)


def run_baselines(
    sites: dict[str, SiteArrays], heldout: SiteArrays, run: RunSettings, progress=None
) -> dict:
    """Train and evaluate the local-only and centralised baselines.

    Args:
        sites: each site's *training* arrays, by site name.
        heldout: the held-out set.
        run: the federated run's settings (network, epochs, batch size, learning rate, seed).
        progress: optional callable ``progress(label)`` called before each model trains.

    Returns:
        ``{"epochs": E, "local-only": {site: summary}, "centralised": summary,
        "site-vendors": [...]}`` with :func:`common.seg.metrics.summarise` summaries.
    """
    import torch

    from common.data.channels import resolve
    from common.seg.networks import create_network

    mode = resolve(run.channels, heldout.channels == 3)  # as the server resolves it
    heldout = heldout.with_channels(mode)
    sites = {name: data.with_channels(mode) for name, data in sites.items()}
    epochs = run.num_server_rounds * run.local_epochs
    settings = replace(run.train_settings(), epochs=epochs, seed=run.seed)
    torch.manual_seed(run.seed)
    initial = create_network(run.network, heldout.channels).state_dict()

    def fit(data: SiteArrays) -> dict:
        model = create_network(run.network, heldout.channels)
        model.load_state_dict(initial)
        train(model, data, settings)
        return evaluate(model, heldout)

    out: dict = {
        "epochs": epochs,
        "local-only": {},
        "site-vendors": sorted({str(v) for d in sites.values() for v in d.vendors}),
    }
    for name, data in sites.items():
        if len(data) == 0:
            continue
        if progress:
            progress(f"local-only {name}")
        out["local-only"][name] = fit(data)
    pooled = [d for d in sites.values() if len(d)]
    if pooled:
        if progress:
            progress("centralised")
        out["centralised"] = fit(SiteArrays.concat(pooled))
    return out
