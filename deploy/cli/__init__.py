"""``fedsynth``, the one command in front of everything a person does.

Inside: ``main`` (the app, its top-level commands and ``fedsynth site``), one module per
command group (``privacy``: ``server`` and ``audit``; ``synth``; ``credentials``:
``deploy``) and ``views`` (progress, tables and the results a terminal shows). Commands
parse options and print; the work is in ``common``, ``client``, ``server`` and
``deploy.local``.
"""
