"""Training reads only what intake prepared; an interrupted intake leaves no half cache."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from common.data import intake
from common.data.intake import prepare_site
from common.data.prepared import cache_path, load_prepared
from common.errors import IntakeError


def test_load_prepared_serves_the_cache_and_warns_when_the_folder_changed(
    tiny_consortium, tmp_path, caplog
):
    data, _ = tiny_consortium
    site = tmp_path / "site"
    shutil.copytree(data / "site-1", site)
    prepared, _ = prepare_site(site, tmp_path / "s", 32, new_secret=True)
    with caplog.at_level(logging.WARNING, logger="common.data.prepared"):
        arrays, meta = load_prepared(site, tmp_path / "s", 32)
    assert len(arrays) == len(prepared) == meta["cases"] > 0
    assert not caplog.records
    (site / "extra.txt").write_text("a new file")
    with caplog.at_level(logging.WARNING, logger="common.data.prepared"):
        again, _ = load_prepared(site, tmp_path / "s", 32)
    assert np.array_equal(again.images, prepared.images)  # still the prepared data
    assert "fedsynth site prepare" in caplog.text


def test_load_prepared_never_prepares(tiny_consortium, tmp_path):
    data, _ = tiny_consortium
    with pytest.raises(IntakeError, match="fedsynth site prepare --image-size 32"):
        load_prepared(data / "site-1", tmp_path / "s", 32)
    assert not (tmp_path / "s").exists()


def test_an_interrupted_intake_leaves_the_previous_cache_or_none(
    tiny_consortium, tmp_path, monkeypatch
):
    data, _ = tiny_consortium
    state = tmp_path / "s"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(intake.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_site(data / "site-1", state, 32, new_secret=True)
    monkeypatch.undo()
    leftovers = sorted(p.name for p in (state / "cache").iterdir())
    assert leftovers == []  # no half-written cache, no description of one
    with pytest.raises(IntakeError, match="no prepared data"):
        load_prepared(data / "site-1", state, 32)
    arrays, _ = prepare_site(data / "site-1", state, 32)  # a re-run starts clean
    assert len(arrays) > 0 and cache_path(state, 32).exists()
