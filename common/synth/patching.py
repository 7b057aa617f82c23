"""A denoiser that works on 2x2 (or p x p) pixel blocks: high resolution at low cost.

Folding each p x p block of pixels into channels (``pixel_unshuffle``) lets the UNet run
at ``1/p`` of the image's side with ``p²`` times the channels, and unfolding its output
gives the prediction at full resolution. The network's cost falls about ``p²``-fold
while every output pixel is still predicted (nothing is upsampled from a smaller
image). Hoogeboom et al. ("simple diffusion", ICML 2023) use the same reshaping as the
first and last layer of pixel-space diffusion models for high-resolution images.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F


class BlockDenoiser(torch.nn.Module):
    """``unet`` applied to ``x`` folded into ``patch x patch`` blocks.

    Args:
        unet: a diffusers ``UNet2DModel`` with ``patch²`` times the pair's channels in
            and out, at ``1/patch`` of the image side.
        patch: block side (2: four times fewer positions).

    Called like the UNet: ``model(x, t).sample`` has ``x``'s shape.
    """

    def __init__(self, unet: torch.nn.Module, patch: int) -> None:
        super().__init__()
        self.unet, self.patch = unet, patch

    def forward(self, x: torch.Tensor, t) -> SimpleNamespace:
        y = self.unet(F.pixel_unshuffle(x, self.patch), t).sample
        return SimpleNamespace(sample=F.pixel_shuffle(y, self.patch))
