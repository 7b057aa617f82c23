"""Synthetic releases as training cases: the same path for the server's pool and for a
site that received other sites' pairs (share=exchange)."""

from __future__ import annotations

import numpy as np

from common.synth.pairs import as_site_arrays


def _release(k, c, size, value):
    images = np.full((k, c, size, size), value, np.float16)
    masks = np.zeros((k, size, size), np.uint8)
    masks[:, : size // 2] = 1
    return images, masks


def test_releases_become_cases_at_the_training_size_and_channels():
    releases = {"b": _release(2, 3, 16, 0.5), "a": _release(3, 3, 16, 0.25)}
    arrays = as_site_arrays(releases, 32, "grey")
    assert arrays.images.shape == (5, 1, 32, 32) and arrays.masks.shape == (5, 32, 32)
    assert list(arrays.vendors) == ["synthetic (a)"] * 3 + ["synthetic (b)"] * 2
    assert len(set(arrays.cases)) == 5 and arrays.patients == 5  # each pair its own unit
    assert arrays.masks[:, :16].all() and not arrays.masks[:, 16:].any()
    assert as_site_arrays(releases, 16, "rgb").images.shape == (5, 3, 16, 16)


def test_no_release_gives_no_case():
    arrays = as_site_arrays({"a": _release(0, 1, 16, 0)}, 32, "grey")
    assert len(arrays) == 0 and arrays.images.shape == (0, 1, 32, 32)


def test_a_site_trains_on_its_cases_plus_the_received_pairs(tiny_consortium, prepare, tmp_path):
    from client.task import load_site, with_received
    from common.config import RunSettings, SiteSettings

    data, _ = tiny_consortium
    prepare(data / "site-1", tmp_path / "state", 32)
    run = RunSettings(image_size=32)
    site = SiteSettings(str(data / "site-1"), str(tmp_path / "state"), "site-1")
    train, _ = load_site(site, run)
    images = np.concatenate([_release(2, 1, 16, 0.1)[0], _release(3, 1, 16, 0.9)[0]])
    masks = np.concatenate([_release(2, 1, 16, 0)[1], _release(3, 1, 16, 0)[1]])
    received = {"images": images, "masks": masks, "sites": ["site-2", "site-3"], "counts": [2, 3]}
    both = with_received(train, received, run)
    assert len(both) == len(train) + 5 and both.images.shape[1:] == train.images.shape[1:]
    assert list(both.vendors[-5:]) == ["synthetic (site-2)"] * 2 + ["synthetic (site-3)"] * 3
    assert both.patients == train.patients + 5
