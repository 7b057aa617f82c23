"""De-identification: how a file leaves the hospital without a name, a date or a face.

Inside: ``profile`` (the PS3.15 Basic Application Level Confidentiality Profile with its
options, from the generated Table E.1-1 in ``ps315_e11``; ``ps315_generate`` regenerates
it, ``ps315_probe`` builds a file holding every attribute of the table), ``pseudonyms``
(keyed pseudonyms only the site can reverse, the site secret and the re-identification
table), ``safe_private`` (private attributes that are safe to keep), ``verify`` (the
search of a de-identified file's bytes for the original values), ``burned_in`` (text in
the pixels: policy, detection, cleaning, OCR) and ``anonymize`` (the one path a file
takes: read, de-identify, clean, verify; for one file or a folder). It may import
``common.errors`` and ``common.keys``; never ``common.data``, ``common.seg``,
``common.synth`` or ``common.privacy``, and nothing of torch.
"""
