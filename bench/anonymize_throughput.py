"""Files per second of ``fedsynth anonymize`` on pydicom's bundled test files.

The 176 files (86 top-level, plus DICOMDIR trees; many vendors, encodings and transfer
syntaxes) are copied ``--copies`` times into one input folder and anonymized with 1 and
with ``--workers`` processes, with pixel OCR on and off (``FEDSYNTH_OCR=0``: suspect
images without a known text region are then quarantined), side by side in one run.
Every file counts, whatever its fate (written, quarantined or rejected), since every one
is read and judged.

Usage::

    python bench/anonymize_throughput.py [--copies 10] [--workers 2]

The comparison with deid and dicognito asked for in issue 4 is not here yet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pydicom

from common.deid.anonymize import anonymize_folder

SOURCE = Path(pydicom.__file__).parent / "data" / "test_files"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/anonymize.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedsynth-anon-") as tmp:
        src = Path(tmp) / "in"
        for i in range(args.copies):
            shutil.copytree(SOURCE, src / f"copy{i:02d}")
        for ocr in ("1", "0"):
            os.environ["FEDSYNTH_OCR"] = ocr  # inherited by the worker processes
            for workers in (1, args.workers):
                out = Path(tmp) / f"out-{workers}-{ocr}"
                start = time.perf_counter()
                report = anonymize_folder(
                    src,
                    out,
                    Path(tmp) / f"state-{workers}-{ocr}" / "site.secret",
                    workers=workers,
                    new_secret=True,
                )
                wall = time.perf_counter() - start
                rows.append(
                    {
                        "ocr": ocr == "1",
                        "workers": workers,
                        "files": report.inputs,
                        "seconds": wall,
                        "files-per-second": report.inputs / wall,
                        "counts": report.counts,
                    }
                )
    base = rows[0]["files-per-second"]
    for r in rows:
        print(
            f"OCR {'on ' if r['ocr'] else 'off'}, {r['workers']} worker(s): {r['files']} files "
            f"in {r['seconds']:.2f} s = {r['files-per-second']:.0f} files/s "
            f"({r['files-per-second'] / base:.2f}x); {r['counts']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"measured": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
