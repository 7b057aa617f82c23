"""Segmentation: the network, its training and how it is scored.

Inside: ``networks`` (MONAI UNet or SegResNet by name), ``transforms`` (standard and
strong, SyntheX-style, augmentation), ``patches`` (random patches for thin structures),
``label_fusion`` (one training label from several annotators: first, majority, STAPLE),
``training`` (local training and inference, plain or DP-SGD) and ``metrics`` (Dice and
IoU per case, summarised per vendor). It may import ``common.data.arrays`` (the arrays it
trains on), ``common.privacy`` and ``common.errors``; never ``common.deid``.
"""
