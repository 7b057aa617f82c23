"""The coordinator's held-out evaluation: every round, Dice/IoU/HD95 overall and per vendor.

The held-out folder goes through the same intake as a site's data (de-identified with
the coordinator's own secret, preprocessed identically, cached), so server-side and
site-side numbers are comparable.
"""

from __future__ import annotations

import logging
from pathlib import Path

from common.data.arrays import SiteArrays
from common.data.intake import prepare_site
from common.deid.pseudonyms import SECRET_FILE

logger = logging.getLogger(__name__)


class HeldOutEvaluator:
    """Evaluates global weights on the held-out set kept at the server.

    Args:
        eval_dir: the held-out data folder (same layouts as a site's data dir).
        state_dir: where its de-identified cache lives.
        image_size: the training resolution.
        network: the network name (to rebuild the model around the weights).
    """

    def __init__(
        self, eval_dir: str | Path, state_dir: str | Path, image_size: int, network: str
    ) -> None:
        self.data: SiteArrays
        # The held-out cache lives in the run's own folder: its pseudonyms never leave the
        # run and link nothing across runs, so a run makes its own secret there.
        new = not (Path(state_dir) / SECRET_FILE).exists()
        self.data, report = prepare_site(
            Path(eval_dir), Path(state_dir), image_size, new_secret=new
        )
        if len(self.data) == 0:
            raise ValueError(
                f"held-out set at {eval_dir} has no usable case: "
                f"{report.counts()}; see {state_dir}/intake_report.json"
            )
        self.network = network
        self.last: tuple | None = None  # (predictions, per-case metrics) of the last call
        logger.info("held-out set: %d cases, vendors %s", len(self.data), report.vendors)

    def use_channels(self, mode: str) -> None:
        """Evaluate on the channels the run trains on (a resolved ``channels`` mode)."""
        self.data = self.data.with_channels(mode)

    def __call__(self, state_dict: dict) -> dict[str, dict[str, float]]:
        """Metrics of ``state_dict`` on the held-out set (:func:`common.seg.training.evaluate`)."""
        from common.seg.metrics import summarise
        from common.seg.networks import create_network
        from common.seg.training import evaluate_cases

        model = create_network(self.network, self.data.channels)
        model.load_state_dict(state_dict)
        self.last = evaluate_cases(model, self.data)
        return summarise(self.last[1], list(self.data.vendors))

    def contact_sheet(self, path: Path) -> Path | None:
        """Draw the last evaluated model's best, median and worst case per vendor
        (:func:`common.report.contact_sheet_png`) to ``path``; None before any evaluation."""
        from common.report import contact_sheet_png

        if self.last is None:
            return None
        preds, per_case = self.last
        png = contact_sheet_png(
            self.data.images,
            self.data.masks * self.data.fov,
            preds,
            [c["dice"] for c in per_case],
            [str(v) for v in self.data.vendors],
        )
        path.write_bytes(png)
        return path
