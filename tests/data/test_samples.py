"""Scenes on disk: the bundled samples, save/load round trips, broken files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from segcam import SegcamError
from segcam.data import (
    SAMPLES,
    SceneConfig,
    bundle_samples,
    load_scene,
    make_scene,
    pick_samples,
    sample_scenes,
    save_scene,
)

FIELDS = ("image", "labels", "instances", "cue", "bias_tile", "distractors")


def assert_same_scene(a, b):
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.classes == b.classes and (a.seed, a.index) == (b.seed, b.index) and a.config == b.config


def test_bundled_samples_are_the_picked_scenes():
    bundled, picked = sample_scenes(), pick_samples()
    assert len(bundled) == 3
    for a, b in zip(bundled, picked):
        assert_same_scene(a, b)


def test_bundle_samples_writes_what_is_shipped(tmp_path):
    paths = bundle_samples(tmp_path)
    assert [p.name for p in paths] == ["scene-1.npz", "scene-2.npz", "scene-3.npz"]
    for path in paths:
        assert_same_scene(load_scene(path), load_scene(SAMPLES / path.name))
        png = path.with_suffix(".png").name
        assert np.array_equal(np.asarray(Image.open(tmp_path / png)), np.asarray(Image.open(SAMPLES / png)))


@pytest.mark.parametrize("config", [SceneConfig(), SceneConfig(size=32, dims=3, tile=8, radius=(4, 6), cue_size=4)])
def test_save_and_load_round_trip_with_the_config(tmp_path, config):
    scene = make_scene(3, 2, config)
    save_scene(scene, tmp_path / "s.npz")
    again = load_scene(tmp_path / "s.npz")
    assert_same_scene(again, scene)
    assert load_scene(tmp_path / "s.npz", config).config == config
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:  # plain arrays only
        assert all(f[k].dtype != object for k in f.files)


def test_a_config_that_contradicts_the_file_is_refused(tmp_path):
    save_scene(make_scene(0, 0), tmp_path / "s.npz")
    with pytest.raises(SegcamError, match="leave config out"):
        load_scene(tmp_path / "s.npz", SceneConfig(bias="none"))


def test_files_without_a_recorded_config_take_the_one_given():
    path = min(SAMPLES.glob("scene-*.npz"))
    assert load_scene(path, SceneConfig(bias="weak")).config == SceneConfig(bias="weak")


def test_broken_scene_files_give_one_error(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    np.save(tmp_path / "one.npy", np.zeros(3))
    np.savez(tmp_path / "partial.npz", image=np.zeros((3, 4, 4)))
    np.savez(tmp_path / "pickled.npz", image=np.array([{}], dtype=object), allow_pickle=True)
    for name, message in [("junk.npz", "cannot read"), ("one.npy", "cannot read"), ("partial.npz", "lacks labels"),
                          ("pickled.npz", "cannot read"), ("missing.npz", "no scene file")]:
        with pytest.raises(SegcamError, match=message):
            load_scene(tmp_path / name)
    with pytest.raises(SegcamError, match="config must be a SceneConfig"):
        load_scene(SAMPLES / "scene-1.npz", {"size": 64})
    with pytest.raises(SegcamError, match="scene must be a Scene"):
        save_scene("scene", tmp_path / "x.npz")


def test_pick_samples_gives_up_with_a_reason(monkeypatch):
    monkeypatch.setattr("segcam.data.samples.MAX_SEARCH", 30)
    # with one object per scene, no scene holds a plus beside another object
    with pytest.raises(SegcamError, match="first 30 .* context-dependent plus"):
        pick_samples(config=SceneConfig(size=24, tile=8, max_objects=1, radius=(3, 4), cue_size=4))


def test_importing_the_data_package_does_not_import_matplotlib_or_the_engine():
    code = ("import sys, segcam.data; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m.startswith(("
            "'segcam.core', 'segcam.methods', 'segcam.explainer', 'segcam.explanation', 'segcam.evaluation', "
            "'segcam.viz', 'segcam.interop', 'segcam.apps', 'segcam.models'))); print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
