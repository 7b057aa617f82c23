"""Synthetic image+mask pairs: the generator, and what is checked before a pair leaves.

Inside: ``diffusion`` (a site's diffusion model over image + mask channels: settings,
DDPM training, optionally under DP-SGD, and sampling; the algorithm reads top to bottom),
``memorisation`` (the gate that drops a synthetic pair too close to a training image) and
``quality`` (how real the pairs look and how varied they are: an offline Fréchet
distance, MS-SSIM, mask statistics). It may import ``common.privacy`` (for DP-SGD) and
``common.errors``; never ``common.deid``.
"""
