"""What the hospital's ClientApp, the coordinator's ServerApp and the CLI share.

Subpackages, one concern each: ``deid`` (de-identification, headers and pixels),
``data`` (a site's folder to prepared arrays), ``seg`` (the segmentation network, its
training and metrics), ``synth`` (the generator of synthetic image+mask pairs and its
gates), ``privacy`` (DP-SGD, accountants, the signed ledger, the audit). The plumbing
stays here: ``config`` (typed settings read once at the edge), ``keys`` (the names of
the messages' records), ``errors``, ``report`` (the run's HTML report) and ``baselines``
(the local-only and centralised reference models). Dependencies run one way:
``data -> deid``; ``seg``, ``synth`` and ``privacy`` never reach ``deid``; nothing here
imports ``client``, ``server`` or ``deploy`` (``tests/test_layout.py`` checks it).
"""
