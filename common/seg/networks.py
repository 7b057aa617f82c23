"""Segmentation networks by name. Every one is DP-ready: no BatchNorm anywhere.

Example:
    >>> net = create_network("unet")
    >>> sum(p.numel() for p in net.parameters()) > 0
    True
"""

from __future__ import annotations

from collections.abc import Callable

from common.errors import ConfigError


def _unet(in_channels: int):
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=2,
        channels=(16, 32, 64, 128),
        strides=(2, 2, 2),
        num_res_units=1,
        norm="instance",
    )


def _unet_deep(in_channels: int):
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=2,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
        norm="instance",
    )


def _segresnet(in_channels: int):
    from monai.networks.nets import SegResNet

    return SegResNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=2,
        init_filters=8,
        blocks_down=(1, 2, 2),
        blocks_up=(1, 1),
        norm=("group", {"num_groups": 4}),
    )


NETWORKS: dict[str, Callable] = {"unet": _unet, "unet-deep": _unet_deep, "segresnet": _segresnet}


def create_network(name: str, in_channels: int = 1):
    """Build the named 2D segmentation network (2 output classes).

    Args:
        name: one of :data:`NETWORKS` (``"unet"``: MONAI UNet with instance norm, four
            levels; ``"unet-deep"``: five levels and two residual units per level, a
            receptive field for objects that fill much of the frame (polyps);
            ``"segresnet"``: MONAI SegResNet with group norm).
        in_channels: image channels (1 for greyscale, 3 for RGB; see
            :func:`common.data.channels.in_channels`).

    Returns:
        A ``torch.nn.Module`` in training mode.

    Raises:
        ConfigError: for an unknown name.
    """
    try:
        factory = NETWORKS[name]
    except KeyError:
        raise ConfigError(f"unknown network {name!r}; choose one of {sorted(NETWORKS)}") from None
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels must be 1 or 3, got {in_channels}")
    return factory(in_channels)
