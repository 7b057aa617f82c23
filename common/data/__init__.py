"""A site's data: from a raw folder to the arrays training reads.

Inside: ``intake`` (``fedsynth site prepare``: every file processed, quarantined or
rejected with a reason, and the report), ``folders`` (listing a site's folder, image
folders' roles, reading plain images), ``prepared`` (the prepared cache training reads:
written whole or not at all, loaded without de-identifying), ``arrays`` (``SiteArrays``,
the cases as arrays), ``channels`` (which image channels a run trains on: auto, rgb, grey,
green), ``review`` (the privacy officer's before/after sheet of cleaned text),
``imaging`` (resizing, normalising, colour detection, display), ``sampledata`` and ``phantom`` (the
built-in sample consortium). It may import ``common.deid`` (intake de-identifies every
file) and ``common.errors``; ``arrays``, ``channels`` and ``imaging`` import nothing of
the project but errors, so that ``common.seg``, ``common.synth`` and the report can use
them without pulling in de-identification.
"""
