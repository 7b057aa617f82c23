"""The polyp benchmark's consortium, built from ../shared/data/polyp (skipped without it)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def _frames(folder):
    return {p.name for p in (folder / "images").iterdir()} if folder.is_dir() else set()


def test_two_centres_split_by_frame_and_by_sequence_and_read_through_the_site_intake(
    tmp_path,
):
    from bench.polyp import layout
    from common.data.intake import prepare_site

    if not layout.POLYP.is_dir():
        pytest.skip(f"polyp data not found at {layout.POLYP} (../shared/data/polyp)")
    data = tmp_path / "data"
    manifest = layout.build(data)
    sites = {s["name"]: s["cases"] for s in manifest["sites"]}
    held = manifest["heldout"]["groups"]
    assert {n: sites[n] + held[n] for n in sites} == {"kvasir": 1000, "clinicdb": 612}
    for name in sites:  # about a fifth of each centre is held out, no frame in both
        assert 0.15 < held[name] / (sites[name] + held[name]) < 0.25
        at_site, heldout = _frames(data / name), _frames(data / "heldout" / name)
        assert (len(at_site), len(heldout)) == (sites[name], held[name])
        assert not at_site & heldout
        for where in (data / name, data / "heldout" / name):  # every frame has its mask
            masks = {p.name for p in (where / "masks").iterdir()}
            assert masks == {f.replace(".jpg", ".png") for f in _frames(where)}
            vendor = json.loads((where / "dataset.json").read_text())
            assert vendor == layout.SITES[name][1]
    targets = [p.resolve() for p in data.rglob("*") if p.is_symlink()]
    assert len(targets) == len(set(targets)) == 2 * (1000 + 612)  # each file linked once
    files = [p for p in data.rglob("*") if p.is_file()]
    assert all(p.is_symlink() or p.name in ("dataset.json", "manifest.json") for p in files)

    # ClinicDB: 29 sequences, as checked by eye, each wholly at the site or held out
    seqs = layout.sequences(layout.POLYP / "cvc-clinicdb")
    assert len(seqs) == layout.CLINICDB_SEQUENCES
    assert tuple(last for _, last in seqs[:-1]) == layout.CHECKED_BOUNDARIES
    assert seqs[0][0] == 1 and seqs[-1][1] == 612
    assert all(b + 1 == a for (_, b), (a, _) in zip(seqs, seqs[1:]))
    at_site, heldout = _frames(data / "clinicdb"), _frames(data / "heldout" / "clinicdb")
    split = {
        n: {f"{f}.jpg" in heldout for f in range(a, b + 1)} for n, (a, b) in enumerate(seqs, 1)
    }
    assert all(len(sides) == 1 for sides in split.values()), "a sequence on both sides"
    out = sorted(f"{n:02d}" for n, sides in split.items() if sides == {True})
    assert out == manifest["split"]["clinicdb held out"]
    assert len(at_site) + len(heldout) == 612

    assert layout.build(tmp_path / "again")["split"] == manifest["split"]  # deterministic
    quick = layout.build(tmp_path / "quick", quick=True)
    assert 0.15 < sum(quick["heldout"]["groups"].values()) / sum(held.values()) < 0.3
    assert all(quick["heldout"]["groups"].values())  # both centres in the held-out set
    for side in ("kvasir", "heldout/kvasir"):  # a quick Kvasir frame keeps its side
        assert _frames(tmp_path / "quick" / side) <= _frames(data / side)

    # a few held-out frames of each centre, through the intake: per-centre vendors, colour
    few = tmp_path / "few"
    for name in sites:
        src = data / "heldout" / name
        for image in sorted((src / "images").iterdir())[:3]:
            for sub, ext in (("images", ".jpg"), ("masks", ".png")):
                link = few / name / sub / f"{image.stem}{ext}"
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to((src / sub / f"{image.stem}{ext}").resolve())
        (few / name / "dataset.json").write_text((src / "dataset.json").read_text())
    arrays, report = prepare_site(few, tmp_path / "s", 64, new_secret=True)
    vendors = {" ".join(v.values()) for _, v in layout.SITES.values()}
    assert set(arrays.vendors) == vendors and report.counts()["rejected"] == 0
    assert len(arrays) >= 4  # one or two may be held for burned-in text
    assert arrays.images.shape[1:] == (3, 64, 64)  # colour kept: the grey row is a choice
    assert 0.01 < arrays.masks.mean() < 0.6  # a polyp, not nothing and not everything
