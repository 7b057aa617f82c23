"""What is in a site's folder: its files (linked folders followed), the roles of image
folders (images, masks, a second annotator's masks, field of view), and plain images read
as arrays."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from common.errors import IntakeError

logger = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp"}
FOLDER_ROLES = {"images": "image", "masks": "mask", "masks2": "mask2", "fov": "fov"}


def list_files(data_dir: Path) -> list[Path]:
    """Every file under ``data_dir``, sorted, following symbolic links to folders.

    Paths stay under ``data_dir`` as written (a file reached through the link ``images ->
    /elsewhere/imgs`` is ``DATA/images/x.png``), since relative paths name files in the
    report. A linked folder whose real path was already listed (a loop such as ``images/up
    -> ..``, or a second link to the same folder) is skipped. Links to files are listed, and
    so are broken links, which intake rejects.

    Raises:
        PermissionError: if ``data_dir`` itself cannot be listed.
    """
    skipped: list[str] = []

    def unreadable(exc: OSError) -> None:
        if exc.filename is None or Path(exc.filename) == data_dir:
            raise exc
        skipped.append(exc.filename)

    visited = {os.path.realpath(data_dir)}
    files: list[Path] = []
    looped = 0
    for folder, subfolders, names in os.walk(data_dir, onerror=unreadable, followlinks=True):
        keep = []
        for name in sorted(subfolders):
            real = os.path.realpath(os.path.join(folder, name))
            if real in visited:
                looped += 1
            else:
                visited.add(real)
                keep.append(name)
        subfolders[:] = keep  # os.walk descends only into these
        files.extend(Path(folder) / name for name in names)
    if looped:
        logger.info(
            "skipped %d link(s) to a folder already listed (a loop or a second link to the "
            "same folder); their files are listed once",
            looped,
        )
    if skipped:
        logger.warning(
            "%d folder(s) under the data dir could not be listed and are not in the intake "
            "report; give the SuperNode's user read access to every folder under it",
            len(skipped),
        )
    return sorted(files)


def folder_role(rel: Path) -> str | None:
    if rel.suffix.lower() not in IMAGE_EXTS or len(rel.parts) < 2:
        return None
    return FOLDER_ROLES.get(rel.parts[-2].lower())


def read_image(path: Path) -> np.ndarray:
    """An image-folder file as an array (palette and 1-bit images as 8-bit grey).

    Raises:
        IntakeError: the file is not a readable image; the reason names the error type.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "1", "LA", "PA", "I;16", "I"):
                img = img.convert("L") if img.mode in ("P", "1", "LA", "PA") else img
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise IntakeError(f"unreadable image ({type(exc).__name__})") from None
