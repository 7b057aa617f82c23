"""The hospital's side: the Flower ClientApp and what it runs at the site.

Inside: ``client_app`` (the thin ClientApp handlers: train, evaluate, synthesize),
``task`` (a round's local work on the site's prepared data), ``synthesis`` (the site's
generator and its releases of synthetic pairs) and ``trainer`` (the warm trainer that
keeps imports and data loaded between Flower's per-message processes). It may import
``common``; never ``server`` or ``deploy``.
"""
