"""A site's cases as arrays, ready for training: :class:`SiteArrays`.

Imports nothing of the project, so that training code can use it without pulling in
de-identification.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

_PATCH = re.compile(r"#\d+,\d+$")  # a patch's position after its patient's pseudonym


def validation_count(cases: int, val_fraction: float) -> int:
    """How many of ``cases`` patients :meth:`SiteArrays.split` holds out for validation:
    none below 5, else ``round(cases * val_fraction)`` and at least one."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if cases < 5 or val_fraction == 0:
        return 0
    return max(1, int(round(cases * val_fraction)))


@dataclass
class SiteArrays:
    """A site's preprocessed cases, ready for training. Indexes line up across fields.

    ``images`` is float16 ``(N, C, S, S)`` in ``[0, 1]`` (C = 1 for greyscale, 3 for
    colour: see :mod:`common.data.channels`); ``masks`` uint8 ``(N, S, S)``;
    ``masks2`` holds a second annotator's masks where ``has_mask2`` is true; ``fov`` is
    the field of view (all ones when none was given); ``vendors`` and ``cases`` are string
    arrays (cases are pseudonyms, never original identifiers).
    """

    images: np.ndarray
    masks: np.ndarray
    vendors: np.ndarray
    cases: np.ndarray
    masks2: np.ndarray
    has_mask2: np.ndarray
    fov: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        """Image channels (1 or 3)."""
        return int(self.images.shape[1])

    def with_channels(self, mode: str) -> SiteArrays:
        """The same cases with the channels a run's ``channels`` setting asks for."""
        from common.data.channels import select

        return SiteArrays(**{**self.__dict__, "images": select(self.images, mode)})

    def patient_ids(self) -> np.ndarray:
        """Each image's patient: its case pseudonym, without the ``#y,x`` a patch adds
        (:func:`common.seg.patches.random_patches`). An image folder's image is a patient
        of its own."""
        return np.array([_PATCH.sub("", str(c)) for c in self.cases], dtype=str)

    @property
    def patients(self) -> int:
        """Distinct patients."""
        return len(np.unique(self.patient_ids()))

    def patient_images(self) -> list[np.ndarray]:
        """For each distinct patient, in sorted pseudonym order, the indexes of its images."""
        _, inverse = np.unique(self.patient_ids(), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        return np.split(order, np.cumsum(np.bincount(inverse))[:-1])

    def subset(self, index: np.ndarray) -> SiteArrays:
        """The cases at ``index`` (an integer or boolean array)."""
        return SiteArrays(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})

    def split(self, val_fraction: float, seed: int = 0) -> tuple[SiteArrays, SiteArrays]:
        """Deterministic train/validation split by patient: a patient's images are all on
        one side.

        Args:
            val_fraction: share of patients held out for local validation (0 gives none).
            seed: changes the split.

        Returns:
            ``(train, val)``; ``val`` is empty when there are fewer than 5 patients.
        """
        ids = self.patient_ids()
        patients = np.unique(ids)
        order = np.argsort([hashlib.sha256(f"{seed}:{c}".encode()).hexdigest() for c in patients])
        held = patients[order[: validation_count(len(patients), val_fraction)]]
        val = np.isin(ids, held)
        return self.subset(~val), self.subset(val)

    @staticmethod
    def concat(parts: list[SiteArrays]) -> SiteArrays:
        """Pool several sites' arrays (for centralised baselines).

        Greyscale and colour sites pool as colour (greyscale repeated over three channels).
        """
        if len({p.channels for p in parts if len(p)}) > 1:
            parts = [p.with_channels("rgb") for p in parts]
        fields = SiteArrays.__dataclass_fields__
        return SiteArrays(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in fields})
