"""Training to mIoU levels: one checkpoint per level, where its metadata says, cached by settings."""

from __future__ import annotations

import json

import pytest

from segcam import SegcamError
from segcam.apps.levels import LevelCheckpoint, train_levels
from segcam.models import UNet, load_weights


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCAM_CACHE", str(tmp_path))
    return tmp_path


class Scripted:
    """An evaluation returning the given mIoUs in turn, counting its calls."""

    def __init__(self, *mious: float) -> None:
        self.mious, self.calls = mious, 0

    def __call__(self, model):
        self.calls += 1
        return {"miou": self.mious[self.calls - 1], "scenes": 64}


def quick(levels, evaluate, logs=None, **options):
    options = {"family": "unet", "steps": 3, "eval_every": 1, "scenes": 4, **options}
    return train_levels(levels, log=(logs if logs is not None else []).append, evaluate=evaluate, **options)


def test_one_file_per_reached_level_and_the_unreached_reported(cache):
    logs = []
    run = quick("0.5,0.3,0.9", Scripted(0.2, 0.55, 0.6), logs)  # evaluated at steps 1, 2, 3
    assert run.checkpoints == (LevelCheckpoint(0.3, 2, 0.55, cache / "unet-3steps-miou0.30.safetensors"),
                               LevelCheckpoint(0.5, 2, 0.55, cache / "unet-3steps-miou0.50.safetensors"))
    assert run.unreached == (0.9,) and run.steps == 3 and run.best == 0.6
    assert logs[-1] == "mIoU levels not reached in 3 steps: 0.90 (best 0.600); train longer (more steps) or lower them."
    model, meta = load_weights(run.paths[1])
    assert meta["family"] == "unet" and meta["miou_level"] == 0.5 and meta["step"] == 2 and meta["steps"] == 3
    assert meta["test"] == {"miou": 0.55, "scenes": 64} and meta["eval_every"] == 1 and not model.training
    record = json.loads((cache / "unet-3steps-miou-levels.json").read_text())
    assert record["key"] == {"levels": [0.3, 0.5, 0.9], "eval_every": 1, "scenes": 4}


def test_a_run_is_reused_only_with_the_same_levels_and_files(cache):
    first = quick((0.3, 0.9), Scripted(0.4, 0.4, 0.4))
    logs, again = [], Scripted()
    assert quick((0.9, 0.3), again, logs) == first and again.calls == 0  # same levels, other order
    assert logs[0].startswith("using cached unet-3steps mIoU-level checkpoints") and "not reached" in logs[1]
    other = Scripted(0.4)  # other levels: trained again, and stopped once all are reached
    assert quick((0.3,), other).steps == 1 and other.calls == 1
    (cache / "unet-3steps-miou0.30.safetensors").unlink()
    quick((0.3,), Scripted(0.4))  # the key matches but the file is gone
    assert (cache / "unet-3steps-miou0.30.safetensors").exists()
    evaluate = Scripted(0.4)
    quick((0.3,), evaluate, force=True)
    assert evaluate.calls == 1
    (cache / "unet-3steps-miou-levels.json").write_text("{damaged")
    assert quick((0.3,), Scripted(0.4)).steps == 1


def test_the_default_unet_gets_its_architecture_in_the_metadata(cache):
    run = train_levels([0.1], steps=2, eval_every=1, scenes=4, log=lambda m: None, evaluate=Scripted(0.05, 0.2))
    assert run.paths == [cache / "default-2steps-miou0.10.safetensors"]
    model, meta = load_weights(run.paths[0])
    assert isinstance(model, UNet) and meta["step"] == 2 and meta["miou_level"] == 0.1 and "family" not in meta


@pytest.mark.parametrize("options, message", [
    ({"levels": "30,50"}, "strictly between 0 and 1"),
    ({"eval_every": 0}, "eval_every must be a positive integer, got 0"),
    ({"steps": 0}, "steps must be a positive integer, got 0"),
    ({"scenes": 2.5}, "scenes must be a positive integer"),
    ({"family": "unett"}, "Did you mean unet"),
])
def test_bad_arguments_name_the_fix(cache, options, message):
    options = {"levels": "0.5", "family": "unet", "log": lambda m: None, **options}
    with pytest.raises(SegcamError, match=message):
        train_levels(**options)
    assert list(cache.iterdir()) == []
