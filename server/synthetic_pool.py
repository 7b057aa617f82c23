"""Synthetic sharing at the server: collect gated pairs from sites, train on the pool.

With ``share=synthetic`` or ``share=both`` the server asks every site for synthetic
image+mask pairs in round 1 (and every ``synth-every`` rounds after), through a
``train.synthesize`` message. Each reply is verified against its signed ledger entry
like any release; its pairs join the pool (a site's newest release replaces its older
one). Then, every round:

* ``synthetic``: the global model trains ``server-epochs`` epochs on the pool at the
  server, starting from the previous round's model; no weights leave any site;
* ``both``: the server trains the global model ``server-epochs`` epochs on the pool
  *before* it sends the model to the sites; the sites train on their real data from
  there and their average is the round's model. (Fine-tuning the average on the pool
  after the sites, the first design, made synthetic pairs the last thing the model saw
  every round and pulled it to them: on real polyps it lost a third of its Dice.)
* ``exchange``: the server trains on nothing; every site's training message carries the
  *other* sites' latest gated pairs, and each site trains on its real data plus them
  (its ledger records what it received with the weights it then released). The weights
  are averaged as usual.

The held-out evaluation is the same as in weights mode. The pool's quality against the
server's held-out real images (Fréchet distance, MS-SSIM diversity, mask statistics and
a grid of pairs) goes to ``OUT/synthetic/quality.json`` and the run report.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from common import keys
from common.config import RunSettings
from server.rounds import RoundRecord

logger = logging.getLogger(__name__)


class SyntheticPool:
    """The latest synthetic release of every site.

    Args:
        out_dir: the run folder; the pool is saved to ``synthetic/pool.npz`` there.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir) / "synthetic"
        self.releases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.nodes: dict[int, str] = {}  # node id -> site, for share=exchange

    def __len__(self) -> int:
        return sum(len(images) for images, _ in self.releases.values())

    def add(self, site: str, images: np.ndarray, masks: np.ndarray, node: int = 0) -> None:
        """Put ``site``'s release in the pool (replacing its previous one); ``node``: the
        SuperNode it came from, so that exchange knows whose pairs not to send back."""
        if images.ndim == 3:  # a single-channel release without its channel axis
            images = images[:, None]
        if (
            images.ndim != 4
            or images.shape[1] not in (1, 3)
            or images.shape[:1] + images.shape[2:] != masks.shape
        ):
            raise ValueError(
                f"synthetic release of {site!r}: images {images.shape} and masks "
                f"{masks.shape} must be (k, C, S, S) with C = 1 or 3 and (k, S, S)"
            )
        self.releases[site] = (images.astype(np.float32), (masks > 0).astype(np.uint8))
        if node:
            self.nodes[node] = site

    def site_arrays(self, image_size: int, channels: str = "auto"):
        """The pool as :class:`common.data.arrays.SiteArrays` at ``image_size`` (vendor:
        site), with the run's resolved ``channels``."""
        from common.synth.pairs import as_site_arrays

        return as_site_arrays(self.releases, image_size, channels)

    def others(self, site: str) -> dict:
        """Every release but ``site``'s: what ``share=exchange`` sends ``site``."""
        return {s: pair for s, pair in sorted(self.releases.items()) if s != site}

    def save(self) -> Path:
        """Write the pool to ``synthetic/pool.npz`` (images, masks, site of each pair)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        sites = [s for s, (im, _) in sorted(self.releases.items()) for _ in range(len(im))]
        parts = [v for _, v in sorted(self.releases.items())]
        path = self.dir / "pool.npz"
        np.savez_compressed(
            path,
            images=np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 1, 1, 1)),
            masks=np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 1, 1)),
            sites=np.asarray(sites, dtype=str),
        )
        return path


def request_messages(grid, server_round: int, channels: str = "auto") -> list[Message]:
    """One ``train.synthesize`` message per connected site (with the run's resolved
    ``channels``)."""
    config = ConfigRecord({keys.SERVER_ROUND: server_round, keys.CHANNELS: channels})
    return [
        Message(
            content=RecordDict({keys.CONFIG: config}),
            message_type=f"train.{keys.SYNTHESIZE}",
            dst_node_id=node,
        )
        for node in grid.get_node_ids()
    ]


def pool_side(run: RunSettings) -> int:
    """The side the server trains on pooled pairs at.

    Whole synthetic images are resized to ``image-size`` like the sites' images; with
    ``synth-patch`` the pairs are patches already at the scale of ``image-size`` and keep
    the generator's side (resizing them would thicken every structure).
    """
    return run.diffusion_settings().image_size if run.synth_patch else run.image_size


def train_on_pool(state_dict: dict, pool, run: RunSettings, server_round: int) -> tuple[dict, dict]:
    """Train the global model on the pool for ``server-epochs`` epochs.

    Args:
        state_dict: the global weights (torch tensors or numpy arrays by name).
        pool: :class:`common.data.arrays.SiteArrays` from :meth:`SyntheticPool.site_arrays`.
        run: run settings (network, batch size, learning rate, augmentation, seed).
        server_round: seeds the augmentation.

    Returns:
        ``(new state dict, {"examples", "loss", "seconds"})``.
    """
    import torch

    from common.seg.networks import create_network
    from common.seg.training import train

    model = create_network(run.network, pool.channels)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()})
    settings = run.train_settings(server_round, site_seed=7919)
    settings = type(settings)(**{**settings.__dict__, "epochs": run.server_epochs})
    stats = train(model, pool, settings)
    info = {"examples": len(pool), "loss": stats.loss, "seconds": stats.seconds}
    return {k: v.detach() for k, v in model.state_dict().items()}, info


def write_quality(pool: SyntheticPool, reference, model=None, model_size: int = 0) -> dict:
    """Quality of the pool against real reference pairs: ``synthetic/quality.json`` and
    ``synthetic/pairs.png`` (see :mod:`common.synth.quality`).

    Args:
        pool: the releases.
        reference: the held-out real :class:`common.data.arrays.SiteArrays`.
        model: the consortium's segmentation network after the last round, for the
            Fréchet distance in its features (``None`` when the pool is first collected:
            the model has not learnt anything yet); ``model_size`` its training side.
    """
    from common.report import sheet_file
    from common.synth.quality import pair_grid_png, quality_summary

    images = np.concatenate([im for im, _ in pool.releases.values()])
    masks = np.concatenate([mk for _, mk in pool.releases.values()])
    size = images.shape[-1]
    if reference.images.shape[-1] > size:  # patches (synth-patch): compare with real patches
        from common.seg.patches import random_patches

        reference = random_patches(reference, size, 4, seed=0)
    real_images = reference.images.astype(np.float32)
    if images.shape[1] != real_images.shape[1]:  # the run's channels: compare like with like
        from common.data.channels import select

        images = select(images, "grey" if real_images.shape[1] == 1 else "rgb")
    summary = quality_summary(real_images, reference.masks, images, masks, model, model_size)
    pool.dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    real_pick = rng.permutation(len(real_images))[:16]
    real = (real_images[real_pick], reference.masks[real_pick])
    summary["per_site"] = {}
    start = 0
    for site, (im, _) in sorted(pool.releases.items()):  # the pool's order (concatenated)
        mine = slice(start, start + len(im))
        start += len(im)
        summary["per_site"][site] = _site_quality(real_images, reference, images[mine], masks[mine])
        if len(im):
            png = pair_grid_png(*real, images[mine][:16], masks[mine][:16], rows_each=1)
            (pool.dir / sheet_file(site)).write_bytes(png)
    (pool.dir / "quality.json").write_text(json.dumps(summary, indent=1))
    pick = rng.permutation(len(images))[:16]
    png = pair_grid_png(*real, images[pick], masks[pick])
    (pool.dir / "pairs.png").write_bytes(png)
    return summary


def _site_quality(real_images, reference, images, masks) -> dict:
    """One site's release against the held-out real set: its contact-sheet numbers."""
    from common.synth.quality import frechet_distance, mask_statistics
    from common.synth.two_sample import classifier_two_sample

    out: dict = {"pairs": int(len(images))}
    if len(images) >= 2:
        out["frechet_distance"] = frechet_distance(real_images, images)
        out["foreground_share"] = mask_statistics(masks)["foreground_share"]
    if min(len(images), len(real_images)) >= 8:
        two = classifier_two_sample(real_images, reference.masks, images, masks)
        out["two_sample_accuracy"] = two["accuracy"]
    return out


class PoolingMixin:
    """Synthetic sharing around a recording strategy (see the module doc).

    Goes before :class:`server.strategies.SiteLedgerMixin` in the bases; reads
    ``self.run`` (:class:`RunSettings`), ``self.pool`` and ``self.timeout``.
    """

    run: RunSettings
    pool: SyntheticPool
    timeout: float = 600.0
    reference = None  # the held-out SiteArrays, to measure the pool's quality against

    def configure_train(self, server_round, arrays: ArrayRecord, config, grid):
        self._current = arrays
        if self.run.synth_due(server_round):
            self._collect(server_round, grid)
        if self.run.share == "synthetic":
            return []  # no site trains weights
        if self.run.share == "both" and len(self.pool) and self.run.server_epochs:
            arrays = self._train_on_pool(server_round, arrays)  # the sites start from here
        messages = super().configure_train(server_round, arrays, config, grid)  # type: ignore[misc]
        if self.run.share == "exchange":
            messages = [self._with_others_pairs(m, server_round) for m in messages]
        return messages

    def _with_others_pairs(self, msg: Message, server_round: int) -> Message:
        """``msg`` carrying every other site's latest release (``share=exchange``)."""
        site = self.pool.nodes.get(msg.metadata.dst_node_id)
        others = self.pool.others(site) if site else dict(self.pool.releases)
        if not others:
            return msg
        images = np.concatenate([im for im, _ in others.values()]).astype(np.float16)
        masks = np.concatenate([mk for _, mk in others.values()])
        # Flower's strategies give every message one shared RecordDict: each site's
        # message gets its own, with the pairs of the sites other than itself
        content = RecordDict(dict(msg.content.items()))
        content[keys.RECEIVED] = ArrayRecord(
            {keys.SYNTH_IMAGES: Array(images), keys.SYNTH_MASKS: Array(masks)}
        )
        content[keys.RECEIVED_FROM] = ConfigRecord(
            {
                keys.RECEIVED_SITES: list(others),
                keys.RECEIVED_COUNTS: [int(len(im)) for im, _ in others.values()],
            }
        )
        out = Message(
            content=content,
            message_type=msg.metadata.message_type,
            dst_node_id=msg.metadata.dst_node_id,
            group_id=msg.metadata.group_id or None,
        )
        record = self.rounds.setdefault(server_round, RoundRecord())  # type: ignore[attr-defined]
        record.exchanged.append(
            {
                "to": site or f"node {msg.metadata.dst_node_id}",
                "pairs": int(len(images)),
                "from": {s: int(len(im)) for s, (im, _) in others.items()},
            }
        )
        return out

    def _collect(self, server_round: int, grid) -> None:
        self._wait_for_sites(grid, self.run.min_sites)  # type: ignore[attr-defined]
        messages = request_messages(grid, server_round, self.run.channels)
        record = self.rounds.setdefault(server_round, RoundRecord())  # type: ignore[attr-defined]
        start = time.monotonic()
        replies = list(grid.send_and_receive(messages, timeout=self.timeout))
        for msg in replies:
            name, problem = self._screen(msg, server_round)  # type: ignore[attr-defined]
            if problem is not None:
                record.synthetic.append({"site": name, **problem})
                continue
            arrays = msg.content[keys.ARRAYS]
            images, masks = arrays[keys.SYNTH_IMAGES].numpy(), arrays[keys.SYNTH_MASKS].numpy()
            self.pool.add(name, images, masks, node=msg.metadata.src_node_id)
            metrics = msg.content.metric_records.get(keys.METRICS, MetricRecord())
            record.synthetic.append({"site": name, **{k: float(v) for k, v in metrics.items()}})
        missing = len(messages) - len(replies)
        if missing:
            record.synthetic.append({"site": f"{missing} site(s)", "failed": "no reply in time"})
        self.pool.save()
        if self.reference is not None and len(self.pool) >= 2:
            write_quality(self.pool, self.reference)
        logger.info(
            "round %d: synthetic pool holds %d pairs from %d site(s) (%.0f s)",
            server_round,
            len(self.pool),
            len(self.pool.releases),
            time.monotonic() - start,
        )

    def _final_quality(self, arrays: ArrayRecord) -> None:
        """The pool's quality again, now also in the features of the trained model."""
        from common.seg.networks import create_network

        reference = self.reference.with_channels(self.run.channels)
        model = create_network(self.run.network, reference.channels)
        model.load_state_dict(arrays.to_torch_state_dict())
        write_quality(self.pool, reference, model, self.run.image_size)

    def aggregate_train(self, server_round: int, replies):
        arrays, metrics = self._aggregate(server_round, replies)
        last = server_round == self.run.num_server_rounds
        if arrays is not None and last and self.reference is not None and len(self.pool) >= 2:
            self._final_quality(arrays)
        return arrays, metrics

    def _aggregate(self, server_round: int, replies):
        if self.run.share == "synthetic":
            record = self.rounds.setdefault(server_round, RoundRecord())  # type: ignore[attr-defined]
            record.seconds = 0.0
            arrays, metrics = self._current, MetricRecord({})
        else:
            arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        if arrays is None or len(self.pool) == 0 or self.run.server_epochs == 0:
            return arrays, metrics
        if self.run.share != "synthetic":  # both: trained before the sites; exchange: at them
            return arrays, metrics
        return self._train_on_pool(server_round, arrays), metrics

    def _train_on_pool(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        """``arrays`` trained ``server-epochs`` epochs on the pool (recorded in the round)."""
        pool = self.pool.site_arrays(pool_side(self.run), self.run.channels)
        state, info = train_on_pool(arrays.to_torch_state_dict(), pool, self.run, server_round)
        info["before-sites"] = self.run.share == "both"
        record = self.rounds.setdefault(server_round, RoundRecord())  # type: ignore[attr-defined]
        record.server_training = info
        logger.info("round %d: %s", server_round, json.dumps(info))
        return ArrayRecord(state)
