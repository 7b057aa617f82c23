"""A warm start that spends no site's privacy: the initial global model, pretrained by the
coordinator on data it may use freely, before round 1.

``warm-start`` in the run config:

* ``""``: none; the initial model is the network's random initialisation (seeded).
* ``"phantoms"``: ``warm-start-cases`` chest-radiograph-like phantoms from the built-in
  generator (:mod:`common.data.phantom`), rendered by each of its vendors in turn and
  stretched as intake stretches real images, trained for ``warm-start-epochs`` with the
  run's batch, learning rate and augmentation. No patient's data is involved.
* a path to a state dict (``.pt``): weights pretrained elsewhere, e.g. on a public
  dataset; they must fit the run's network and channels.

Under DP the sites then fine-tune from this start; the privacy they spend covers only
what they add. What the start was goes into ``run.json`` and the report.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common.config import RunSettings
from common.errors import ConfigError

logger = logging.getLogger(__name__)


def phantom_arrays(cases: int, image_size: int, channels: int, seed: int):
    """``cases`` phantoms as :class:`common.data.arrays.SiteArrays` at ``image_size``."""
    import torch
    import torch.nn.functional as F

    from common.data.arrays import SiteArrays
    from common.data.phantom import VENDORS, make_phantom

    images, masks = [], []
    for i in range(cases):
        rng = np.random.default_rng([seed, 7_000_003, i])
        vendor = VENDORS[i % len(VENDORS)]
        att, mask = make_phantom(rng, vendor.size)
        stored = vendor.render(att, rng).astype(np.float32)
        low, high = np.percentile(stored, [1, 99])
        image = np.clip((stored - low) / max(high - low, 1e-6), 0, 1)
        pair = torch.as_tensor(np.stack([image, mask.astype(np.float32)]))[None]
        pair = F.interpolate(pair, size=(image_size, image_size), mode="bilinear")[0].numpy()
        images.append(np.repeat(pair[:1], channels, axis=0))
        masks.append((pair[1] > 0.5).astype(np.uint8))
    n = len(images)
    shape = (n, image_size, image_size)
    return SiteArrays(
        images=np.stack(images).astype(np.float16),
        masks=np.stack(masks),
        vendors=np.array(["phantom"] * n),
        cases=np.array([f"phantom-{i}" for i in range(n)]),
        masks2=np.zeros(shape, np.uint8),
        has_mask2=np.zeros(n, bool),
        fov=np.ones(shape, np.uint8),
    )


def warm_start(model, run: RunSettings, channels: int) -> dict | None:
    """Pretrain ``model`` in place as ``run.warm_start`` says; what was done, for the record.

    Returns:
        ``None`` without a warm start, else ``{"kind", ...}``: phantoms with their count,
        epochs, final loss and seconds; weights with the file and its SHA-256.

    Raises:
        ConfigError: an unknown value, a missing file, or weights that do not fit.
    """
    import torch

    if not run.warm_start:
        return None
    start = time.perf_counter()
    if run.warm_start == "phantoms":
        from common.seg.training import train

        data = phantom_arrays(run.warm_start_cases, run.image_size, channels, run.seed)
        # every parameter: dp-trainable is for the sites' DP fine-tuning, not this
        settings = replace(run.train_settings(0, 0), epochs=run.warm_start_epochs, trainable="all")
        stats = train(model, data, settings)
        record = {
            "kind": "phantoms",
            "cases": len(data),
            "epochs": run.warm_start_epochs,
            "loss": round(stats.loss, 4),
        }
    else:
        path = Path(run.warm_start)
        if path.suffix != ".pt" or not path.is_file():
            raise ConfigError(
                f'warm-start must be "", "phantoms" or an existing .pt state dict, got '
                f"{run.warm_start!r}"
            )
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except RuntimeError as exc:
            raise ConfigError(
                f"warm-start weights {path} do not fit network={run.network!r} with "
                f"{channels} input channel(s): {str(exc).splitlines()[0]}"
            ) from None
        record = {
            "kind": "weights",
            "file": str(path),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    record["seconds"] = round(time.perf_counter() - start, 1)
    logger.info("warm start: %s", record)
    return record
