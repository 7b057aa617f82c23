"""A site's data: from a raw folder to the arrays training reads.

Inside: ``intake`` (``fedsynth site prepare``: every file processed, quarantined or
rejected with a reason, and the report), ``folders`` (listing a site's folder, image
folders' roles, reading plain images), ``prepared`` (the prepared cache training reads:
written whole or not at all, loaded without de-identifying), ``arrays`` (``SiteArrays``,
the cases as arrays), ``review`` (the privacy officer's before/after sheet of cleaned
text), ``imaging`` (resizing and normalising), ``sampledata`` and ``phantom`` (the
built-in sample consortium). It may import ``common.deid`` (intake de-identifies every
file) and ``common.errors``; ``arrays`` imports nothing of the project, so that
``common.seg`` can use it without pulling in de-identification.
"""
