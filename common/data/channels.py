"""Which image channels a run trains on: ``channels = "auto" | "rgb" | "grey" | "green"``.

Intake keeps what the data has: a site's cache holds ``(N, 1, S, S)`` for greyscale
images and ``(N, 3, S, S)`` as soon as one image is in colour (greyscale images of such a
site repeated over three channels). Each colour channel is stretched to its own
0.5–99.5 percentiles, image by image: a per-image white balance that removes a centre's
illumination cast, and that makes the green channel exactly the single-channel image
earlier versions kept.

A run then picks its channels, the same at every site and at the server:

* ``rgb``: three channels (greyscale images repeated);
* ``grey``: one luminance channel (ITU-R BT.601 weights, re-stretched);
* ``green``: the green channel of colour images (fundus vessels have most contrast
  there), greyscale images as they are;
* ``auto``: ``rgb`` if the coordinator's held-out set is in colour, else ``grey``; the
  coordinator resolves it once and sends the result with every message, so sites never
  disagree.

Example:
    >>> import numpy as np
    >>> select(np.zeros((2, 3, 8, 8), np.float16), "green").shape
    (2, 1, 8, 8)
    >>> in_channels("rgb"), resolve("auto", colour=False)
    (3, 'grey')
"""

from __future__ import annotations

import numpy as np

from common.errors import ConfigError

MODES = ("auto", "rgb", "grey", "green")

#: ITU-R BT.601 luma weights (R, G, B).
LUMA = (0.299, 0.587, 0.114)


def check(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`.

    Raises:
        ConfigError: naming the bad value and the choices.
    """
    if mode not in MODES:
        raise ConfigError(
            f"channels must be one of {MODES}, got {mode!r} (auto: RGB stays RGB, "
            "greyscale stays grey)"
        )
    return mode


def resolve(mode: str, colour: bool) -> str:
    """A concrete mode: ``auto`` becomes ``rgb`` for colour data, ``grey`` otherwise."""
    check(mode)
    if mode != "auto":
        return mode
    return "rgb" if colour else "grey"


def in_channels(mode: str) -> int:
    """The network's input channels for a resolved ``mode`` (3 for rgb, else 1).

    Raises:
        ConfigError: for ``auto`` (resolve it first) or an unknown mode.
    """
    check(mode)
    if mode == "auto":
        raise ConfigError("channels=auto must be resolved before building a network")
    return 3 if mode == "rgb" else 1


def select(images: np.ndarray, mode: str) -> np.ndarray:
    """The channels of ``images`` (``(N, C, S, S)``, C = 1 or 3) that ``mode`` asks for.

    ``auto`` returns the images as they are. The dtype is kept.

    Raises:
        ConfigError: for an unknown mode.
        ValueError: if ``images`` is not ``(N, 1 or 3, S, S)``.
    """
    check(mode)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, S, S), got shape {images.shape}")
    colour = images.shape[1] == 3
    if mode == "auto":
        return images
    if mode == "rgb":
        return images if colour else np.repeat(images, 3, axis=1)
    if not colour:
        return images
    if mode == "green":
        return images[:, 1:2]
    return _luminance(images)


def _luminance(images: np.ndarray) -> np.ndarray:
    """BT.601 luma of per-channel stretched RGB, each image re-stretched to ``[0, 1]``."""
    grey = np.tensordot(np.asarray(LUMA, np.float32), images.astype(np.float32), axes=(0, 1))
    out = np.empty((len(images), 1, *images.shape[2:]), images.dtype)
    for i, g in enumerate(grey):
        lo, hi = np.percentile(g, [0.5, 99.5])
        out[i, 0] = np.clip((g - lo) / (hi - lo), 0, 1) if hi - lo > 1e-6 else 0
    return out
