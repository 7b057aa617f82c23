"""FedSynth's de-identification vs deid (default recipe) and dicognito, in one run.

Two measurements on the same inputs:

1. **Table E.1-1 coverage**: one file holding every concrete attribute of PS3.15 Table
   E.1-1 (:mod:`common.deid.ps315_probe`); how many attributes each tool leaves with their
   original value.
2. **Throughput**: pydicom's bundled test files that are complete DICOM instances (read,
   de-identify, serialise to memory), repeated ``--repeat`` times, single process; FedSynth
   also with ``--workers`` processes (``anonymize_folder``, which writes files too), and
   with pixel OCR on and off; and split by the pixel check the recipe gives each file
   (strict, fast, none), FedSynth with pixel checks on against deid on the same files.

Needs ``pip install dicognito`` (deid is a project dependency). Usage::

    python bench/deid_comparison.py [--repeat 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from common.deid.anonymize import anonymize_folder, deidentify_file
from common.deid.ps315_probe import leftovers, probe_dataset
from common.deid.pseudonyms import SiteSecret

SOURCE = Path(pydicom.__file__).parent / "data" / "test_files"
SECRET = SiteSecret(b"b" * 32)


def _serialise(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def run_fedsynth(path: Path) -> bytes:
    return deidentify_file(path, SECRET).data  # already serialised (and verified)


def run_deid(path: Path) -> bytes:
    from deid.dicom import replace_identifiers

    return _serialise(replace_identifiers([str(path)], save=False)[0])


def run_dicognito(path: Path) -> bytes:
    from dicognito.anonymizer import Anonymizer

    ds = pydicom.dcmread(path)
    Anonymizer().anonymize(ds)
    return _serialise(ds)


TOOLS = {"fedsynth": run_fedsynth, "deid (default recipe)": run_deid, "dicognito": run_dicognito}


def instances() -> list[Path]:
    """pydicom test files that are complete instances every tool can read."""
    out = []
    for p in sorted(SOURCE.rglob("*")):
        if not p.is_file() or "DICOMDIR" in p.name:
            continue
        try:
            ds = pydicom.dcmread(p)
        except Exception:
            continue
        if "SOPInstanceUID" in ds and "SOPClassUID" in ds:
            out.append(p)
    return out


def by_check(files: list[Path]) -> dict[str, list[Path]]:
    """The files grouped by the pixel check FedSynth's recipe gives them."""
    from common.deid.burned_in.policy import policy

    groups: dict[str, list[Path]] = {}
    for p in files:
        ds = pydicom.dcmread(p)
        check = policy(ds).check if "PixelData" in ds else "none"
        groups.setdefault(check, []).append(p)
    return groups


def _timed(tool, files: list[Path], repeat: int) -> tuple[float, int]:
    errors = 0
    start = time.perf_counter()
    for _ in range(repeat):
        for p in files:
            try:
                tool(p)
            except Exception:
                errors += 1
    return time.perf_counter() - start, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/deid_comparison.json"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results: dict = {
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "coverage": {},
        "throughput": [],
        "by pixel check": [],
    }
    with tempfile.TemporaryDirectory(prefix="fedsynth-deidcmp-") as tmp:
        probe = Path(tmp) / "probe.dcm"
        ds = probe_dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.999"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(probe, enforce_file_format=True)
        original = pydicom.dcmread(probe)
        del original.SOPClassUID  # added to make a valid file; not a Table E.1-1 attribute
        for name, tool in TOOLS.items():
            left = leftovers(original, pydicom.dcmread(io.BytesIO(tool(probe))))
            results["coverage"][name] = {
                "attributes": len(original),
                "left": len(left),
                "examples": left[:8],
            }
        files = instances()
        groups = by_check(files)
        os.environ["FEDSYNTH_OCR"] = "1"
        for check, members in groups.items():  # pixel checks on; where the time goes
            for name in ("fedsynth", "deid (default recipe)"):
                wall, errors = _timed(TOOLS[name], members, args.repeat)
                n = args.repeat * len(members)
                results["by pixel check"].append(
                    {
                        "check": check,
                        "tool": name,
                        "files": n,
                        "errors": errors,
                        "seconds": wall,
                        "files-per-second": n / wall,
                    }
                )
        os.environ["FEDSYNTH_OCR"] = "0"
        for ocr in ("0", "1"):
            os.environ["FEDSYNTH_OCR"] = ocr
            names = list(TOOLS) if ocr == "0" else ["fedsynth"]
            for name in names:
                tool, errors = TOOLS[name], 0
                start = time.perf_counter()
                for _ in range(args.repeat):
                    for p in files:
                        try:
                            tool(p)
                        except Exception:
                            errors += 1
                wall = time.perf_counter() - start
                n = args.repeat * len(files)
                results["throughput"].append(
                    {
                        "tool": name,
                        "ocr": ocr == "1",
                        "workers": 1,
                        "files": n,
                        "errors": errors,
                        "seconds": wall,
                        "files-per-second": n / wall,
                    }
                )
            src = Path(tmp) / "in"
            for i in range(args.repeat):
                for p in files:
                    target = src / f"copy{i}" / p.relative_to(SOURCE)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(p, target)
            for workers in (1, args.workers):
                start = time.perf_counter()
                report = anonymize_folder(
                    src,
                    Path(tmp) / f"out-{ocr}-{workers}",
                    Path(tmp) / f"state-{ocr}-{workers}" / "s.secret",
                    workers=workers,
                    new_secret=True,
                )
                wall = time.perf_counter() - start
                results["throughput"].append(
                    {
                        "tool": "fedsynth anonymize (writes files)",
                        "ocr": ocr == "1",
                        "workers": workers,
                        "files": report.inputs,
                        "seconds": wall,
                        "files-per-second": report.inputs / wall,
                    }
                )
            shutil.rmtree(src)
    for name, cov in results["coverage"].items():
        print(
            f"{name:28s} leaves {cov['left']:4d} of {cov['attributes']} E.1-1 attributes "
            f"with their original value"
        )
    for row in results["throughput"]:
        print(
            f"{row['tool']:36s} OCR {'on ' if row['ocr'] else 'off'} {row['workers']} worker(s)"
            f": {row['files-per-second']:7.0f} files/s ({row['files']} files)"
        )
    for row in results["by pixel check"]:
        print(
            f"{row['check']:6s} check files: {row['tool']:24s} {row['files-per-second']:7.0f} "
            f"files/s ({row['files']} files, {row['errors']} not written)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
