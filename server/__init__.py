"""The coordinator's side: the Flower ServerApp and what it runs between rounds.

Inside: ``server_app`` (the thin ServerApp), ``strategies`` (FedAvg and friends with a
per-round record of every site, ``rounds``), ``synthetic_pool`` (pooling synthetic pairs
and training on them), ``central_dp`` (central DP on sites' updates), ``update_checks``
(unsafe updates rejected), ``releases`` (signed releases verified), ``grid``,
``evaluation`` (the held-out, multi-vendor test set) and ``outputs`` (metrics, checkpoints,
the report). It may import ``common``; never ``client`` or ``deploy``.
"""
