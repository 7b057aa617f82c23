"""The prepared cache: what ``fedsynth site prepare`` leaves for training to read.

Written whole or not at all (:func:`replaced`); read back by :func:`load_prepared`, which
never de-identifies and says which command to run when there is nothing to read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from common.data.arrays import SiteArrays
from common.data.folders import list_files
from common.errors import IntakeError

logger = logging.getLogger(__name__)

#: Bumped when the cache's content changes meaning: older caches are rebuilt.
CACHE_VERSION = "4"  # 4: images (N, C, S, S), colour kept


def fingerprint(data_dir: Path, files: list[Path], image_size: int) -> str:
    h = hashlib.sha256(f"{CACHE_VERSION}:{image_size}".encode())
    for f in files:
        try:
            st = f.stat()
            h.update(f"{f.relative_to(data_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{f.relative_to(data_dir)}:unreadable".encode())
    return h.hexdigest()


def cache_path(state_dir: Path, image_size: int) -> Path:
    """Where :func:`prepare_site` keeps a site's arrays at ``image_size``."""
    return Path(state_dir) / "cache" / f"site-{image_size}.npz"


@contextlib.contextmanager
def replaced(path: Path):
    """A binary file handle whose content replaces ``path`` only if the block completes."""
    part = path.with_name(path.name + ".part")
    try:
        with open(part, "wb") as f:
            yield f
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


def load_prepared(data_dir: Path, state_dir: Path, image_size: int) -> tuple[SiteArrays, dict]:
    """The arrays ``fedsynth site prepare`` cached for a site; never de-identifies.

    Training reads only what intake produced: de-identification (with pixel OCR) is a
    phase of its own. A folder that changed since it was prepared is still served from
    the prepared cache, with a warning in the log.

    Args:
        data_dir: the site's raw data folder (only compared, never read).
        state_dir: the site's state dir, where intake left its cache.
        image_size: the run's training resolution.

    Returns:
        ``(arrays, description)``; the description has the intake ``counts``.

    Raises:
        IntakeError: no cache at this size, or one prepared from another data folder; the
            message says which command to run (it names no path: it may leave the site).
    """
    npz = cache_path(state_dir, image_size)
    meta_path = npz.with_suffix(".json")
    if not npz.exists() or not meta_path.exists():
        raise IntakeError(
            f"no prepared data at image-size {image_size}: run `fedsynth site prepare "
            f"--image-size {image_size}` with this node's data-dir and state-dir before "
            "the run (training never de-identifies)"
        )
    meta = json.loads(meta_path.read_text())
    data_dir = Path(data_dir)
    prepared_from = meta.get("data_dir")
    if prepared_from and data_dir.exists() and Path(prepared_from) != data_dir.resolve():
        raise IntakeError(
            "the prepared data came from another folder than this node's data-dir: run "
            f"`fedsynth site prepare --image-size {image_size}` again with the data-dir "
            "in use"
        )
    try:
        current = fingerprint(data_dir, list_files(data_dir), image_size)
    except OSError:
        current = meta.get("fingerprint")
    if current != meta.get("fingerprint"):
        logger.warning(
            "the data folder changed since it was prepared; training on the data prepared "
            "then. Run `fedsynth site prepare` to include the changes"
        )
    return load_cached(npz), meta


def load_cached(path: Path) -> SiteArrays:
    """Load a cache written by :func:`prepare_site` (fast: one ``np.load``)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in SiteArrays.__dataclass_fields__}
    if arrays["images"].ndim == 3:  # a cache from before version 4: greyscale, no axis
        arrays["images"] = arrays["images"][:, None]
    return SiteArrays(**arrays)
