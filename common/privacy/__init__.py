"""Privacy accounting and the record of what left a site.

Inside: ``dp`` (DP-SGD for a site's round with Opacus: settings, the round's plan, the
private model), ``accountant`` (the site's cumulative privacy accountant, saveable, PRV or
RDP, and the Gaussian mechanism's epsilon), ``grad_samplers`` (per-sample gradient rules
for the layers Opacus lacks), ``ledger`` (the append-only, hash-chained, signed ledger of
releases), ``site_keys`` (a site's Ed25519 signing key), ``audit`` (what an auditor checks
in ledgers) and ``audit_report`` (its summary). It may import ``common.errors`` and
``common.report``; never ``common.deid``.
"""
