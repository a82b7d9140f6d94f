"""A batch run's settings are checked where they are made, each bad one naming its fix."""

from __future__ import annotations

import pytest

from segcam.apps.batch.config import BatchConfig
from segcam.apps.batch.targets import TargetSpec
from segcam.errors import SegcamError


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"methods": ()}, "non-empty tuple of method names"),
    ({"methods": "seg-grad-cam"}, "non-empty tuple of method names"),
    ({"methods": ("seg-grad-cum",)}, r"unknown method 'seg-grad-cum' \(did you mean seg-grad-cam"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"batch_size": True}, "batch_size must be a positive integer"),
    ({"batch_size": 2.0}, "batch_size must be a positive integer"),
    ({"workers": -1}, "workers must be an integer ≥ 0"),
    ({"workers": "auto"}, r"or None \(decide from the files\)"),
    ({"metrics": ("speed",)}, "speed"),
    ({"overlays": "yes"}, "overlays must be True or False"),
    ({"methods": ("seg-grad-cam", "seg-grad-cam")}, "names a method twice"),
    ({"options": {"seg-xres-cam": {"window": 2}}}, "which this run does not use"),
    ({"methods": ("seg-xres-cam",), "options": {"seg-xres-cam": {"windw": 2}}}, "windw"),
    ({"methods": ("seg-xres-cam",), "options": {"seg-xres-cam": {"window": 0}}}, "window"),
    ({"options": [("seg-grad-cam", {})]}, "options must be a dict"),
    ({"layers": "downs.2"}, r"tuple of layer names \(e.g. \('downs.2',\)\)"),
    ({"layers": ()}, "tuple of layer names"),
    ({"max_pixels": -5}, "max_pixels must be a positive integer"),
    ({"ahead": 0}, "ahead must be a positive integer"),
])
def test_bad_settings_name_the_fix(kwargs, match):
    with pytest.raises(SegcamError, match=match):
        BatchConfig(**kwargs)


def test_good_settings_are_kept():
    config = BatchConfig(methods=("seg-grad-cam", "rise"), batch_size=1, workers=None, targets="instances:1,3")
    assert config.batch_size == 1 and config.workers is None and isinstance(config.spec(), TargetSpec)
    assert config.spec().kind == "instances"
