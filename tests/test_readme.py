"""The README's examples run: every Python block (in order, in one namespace, as a reader would
paste them) and every `segcam` command line, in a scratch folder holding `scene.png` and a folder
`images/` of the three sample scenes.

Two commands are parsed but not run, for time: `segcam train` (the default model takes 6 minutes
and a family a minute or more; tests/apps/test_train.py, test_levels.py and test_cli.py train for
a few steps instead) and `segcam evaluate` (10 minutes; tests/apps/test_evaluate.py runs
`--quick` end to end); `segcam serve` runs until stopped (tests/apps/web/ start it).  Their outputs are made here so the commands that follow them can run.  The quick
start's install lines are what `.ci/run` runs, and this test checks that they agree.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

import segcam
from segcam.apps import cli
from segcam.data import CLASS_NAMES, SAMPLES
from segcam.methods import unregister
from segcam.models import save_weights, zoo

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
SLOW = ("segcam train", "segcam evaluate", "segcam serve")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def commands() -> list[str]:
    lines = []
    for block in blocks("bash"):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def test_the_ci_runs_the_readmes_test_command():
    quick_start = blocks("bash")[0].splitlines()
    assert len(quick_start) == 2 and "segcam demo" in quick_start[0]
    assert quick_start[1] in (ROOT / ".ci" / "run").read_text()


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    shutil.copy(SAMPLES / "scene-1.png", tmp_path / "scene.png")
    (tmp_path / "images").mkdir()  # the folder the batch examples explain
    for i in (1, 2, 3):
        shutil.copy(SAMPLES / f"scene-{i}.png", tmp_path / "images" / f"scene-{i}.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SEGCAM_CACHE", raising=False)
    cache = tmp_path / ".cache" / "segcam"  # what `segcam train --family unet` would leave there
    cache.mkdir(parents=True)
    for step in (100, 200, 300):
        meta = {"family": "unet", "num_classes": 6, "step": step, "steps": 300, "class_names": list(CLASS_NAMES)}
        save_weights(zoo.build("unet", 6), cache / f"unet-300steps-at{step}.safetensors", meta)
    for level, step in ((0.3, 125), (0.5, 175), (0.7, 275), (0.9, 475)):  # ... --miou-levels 0.3,0.5,0.7,0.9
        meta = {"family": "unet", "num_classes": 6, "step": step, "steps": 600, "miou_level": level,
                "test": {"miou": level + 0.05}}
        save_weights(zoo.build("unet", 6), cache / f"unet-600steps-miou{level:.2f}.safetensors", meta)
    return tmp_path


def test_the_python_examples_run(scratch):
    namespace: dict = {}
    try:
        for block in blocks("python"):
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    finally:
        unregister("power-cam")
    assert isinstance(namespace["exp"], segcam.Explanation) and namespace["exp"].method == "power-cam"
    assert namespace["exps"].layers == ["downs.1", "downs.2"]


def arguments(line: str) -> list[str]:
    args = []
    for word in shlex.split(line, comments=True)[1:]:
        word = os.path.expanduser(word)
        args += sorted(glob.glob(word)) if "*" in word else [word]
    return args


@pytest.mark.parametrize("line", [c for c in commands() if c.startswith("segcam ") and not c.startswith(SLOW)])
def test_the_command_lines_run(scratch, line, capsys):
    assert cli.main(arguments(line)) == 0, capsys.readouterr().err


@pytest.mark.parametrize("line", [c for c in commands() if c.startswith(SLOW)])
def test_the_training_command_lines_are_valid(line):
    """Not run (minutes of training or benchmarking), but read by the real parser: the flags
    exist and fit.  `segcam evaluate --quick` runs end to end in tests/apps/test_evaluate.py."""
    args = cli.build_parser().parse_args(arguments(line))
    assert args.run.__name__ == f"cmd_{args.command}"


@pytest.mark.parametrize("line", [c for c in commands() if c.startswith("segcam serve")])
def test_the_serve_command_lines_load_their_models(line):
    """`segcam serve` runs until stopped; its lines are checked up to the moment it would listen:
    the flags parse and every model they name loads (tests/apps/web/ start real servers)."""
    from segcam.apps.web import create_app
    from segcam.apps.web.command import config_from

    args = cli.build_parser().parse_args(arguments(line))
    config = config_from(args)
    info = create_app(config).state.workbench.info()
    assert [m["name"] for m in info["models"]] == [m.name or m.spec for m in config.models]
