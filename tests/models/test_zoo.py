"""Every model family of the zoo, built offline with random weights and explained end to end."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import assert_untouched, snapshot

from segcam import Explainer, ModelError, SegcamError, Target, regions
from segcam.core.layers import find_layer
from segcam.models import zoo


def _transformers_major() -> int:
    if importlib.util.find_spec("transformers") is None:
        return 0
    import transformers

    return int(transformers.__version__.split(".")[0])


# Readable name → module name for the default layer (first) and the non-default layers explained
# below, written out by hand from the libraries' module trees.
if _transformers_major() >= 5:
    SEGFORMER = {
        "bottleneck": "segformer.stages.3",
        "block2.1.attn-norm": "segformer.stages.1.blocks.0.layernorm_before",
        "block3.2.mixffn-dwconv": "segformer.stages.2.blocks.1.mlp.dwconv.dwconv",
        "block1.2.attn-dropout": "segformer.stages.0.blocks.1.hidden_dropout",
        "decode-head": "decode_head.activation",
    }
else:  # transformers 4
    SEGFORMER = {
        "bottleneck": "segformer.encoder.layer_norm.3",
        "block2.1.attn-norm": "segformer.encoder.block.1.0.layer_norm_1",
        "block3.2.mixffn-dwconv": "segformer.encoder.block.2.1.mlp.dwconv.dwconv",
        "block1.2.attn-dropout": "segformer.encoder.block.0.1.attention.output.dropout",
        "decode-head": "decode_head.activation",
    }

EXPECTED = {
    "unet": {"bottleneck": "downs.2", "encoder2": "downs.1"},
    "vgg-unet": {"bottleneck": "encoder.block5", "decoder2": "decoder.up2"},
    "deeplabv3-resnet50": {"bottleneck": "backbone.layer4", "aspp": "classifier.0"},
    "deeplabv3-mobilenet": {"bottleneck": "backbone.16", "encoder4": "backbone.4"},
    "fcn-resnet50": {"bottleneck": "backbone.layer4", "encoder3": "backbone.layer3"},
    "segformer": SEGFORMER,
    "unetr": {"bottleneck": "vit.norm", "vit.block6": "vit.blocks.5", "decoder3": "decoder3"},
    "monai-unet": {
        "bottleneck": "model.1.submodule.1.submodule.1.submodule",
        "encoder2": "model.1.submodule.0",
        "decoder2": "model.1.submodule.2",
    },
    "swin-unetr": {"bottleneck": "encoder10", "swin.stage2": "swinViT.layers2.0", "decoder3": "decoder3"},
    "smp-unet": {"bottleneck": "encoder.layer4", "encoder2": "encoder.layer2",
                 "decoder3": "decoder.blocks.2"},
}

# Input shapes: UNETR needs exactly its img_size; SwinUNETR's 32³ has a 1×1×1 bottleneck that
# MONAI's instance norm rejects, so one axis is 64.
SHAPES = {2: (64, 64), 3: (32, 32, 32)}
SPECIAL_SHAPES = {("swin-unetr", 3): (64, 32, 32)}
PIXEL = {2: (16, 40), 3: (8, 16, 20)}
BOX = {2: (8, 4, 40, 28), 3: (4, 8, 4, 20, 24, 28)}

CASES = [
    pytest.param(name, dims, id=f"{name}-{dims}d",
                 marks=[] if fam.available() else pytest.mark.skip(f"needs {fam.requires}"))
    for name, fam in zoo.FAMILIES.items()
    for dims in fam.dims
]


class Built:
    """A family's model, explainer and test image, built once per test module."""

    def __init__(self, name: str, dims: int):
        fam = zoo.family(name)
        self.shape = SPECIAL_SHAPES.get((name, dims), SHAPES[dims])
        channels = 3 if dims == 2 else 1
        torch.manual_seed(0)
        self.model = zoo.build(name, num_classes=4, in_channels=channels, dims=dims)
        self.names, default = zoo.layer_names(name, self.model)
        self.explainer = Explainer(self.model, layer_names=self.names, default_layer=default)
        gen = torch.Generator().manual_seed(1)
        prep = dataclasses.replace(fam.preprocess, size=None)  # the shape is chosen above
        self.image = prep(torch.rand(channels, *self.shape, generator=gen))
        self.predicted = self.explainer.forward(self.image).predicted[0]


@pytest.fixture(scope="module")
def built():
    cache: dict[tuple[str, int], Built] = {}

    def get(name: str, dims: int) -> Built:
        if (name, dims) not in cache:
            cache[name, dims] = Built(name, dims)
        return cache[name, dims]

    return get


def test_every_registered_family_is_tested():
    assert set(zoo.FAMILIES) == set(EXPECTED)


def check(exp, shape: tuple[int, ...], layer: str) -> None:
    """A map of the input's shape in [0, 1] from ``layer`` that the region's score depends on."""
    assert exp.layer == layer
    assert exp.heatmap.shape == shape
    assert torch.isfinite(exp.map).all() and torch.isfinite(exp.raw).all()
    assert exp.map.min() >= 0 and exp.map.max() <= 1
    assert exp.raw.any(), "the layer does not influence the score"
    assert exp.map.max() == (1 if (exp.raw > 0).any() else 0)  # normalised to a peak of 1
    assert exp.region.any()


@pytest.mark.parametrize("method", ["seg-grad-cam", "seg-xres-cam"])
@pytest.mark.parametrize("name, dims", CASES)
def test_explain_pixel_box_and_predicted_class(built, name, dims, method):
    b = built(name, dims)
    model, layers = b.model, EXPECTED[name]
    p = PIXEL[dims]
    targets = [
        Target(1, regions.pixel(*p)),
        Target(2, regions.box(*BOX[dims])),
        Target(int(b.predicted[p]), regions.predicted()),  # predicted at p: never empty
    ]
    default, *others = layers
    first = next(model.parameters())
    last = list(model.parameters())[-1]
    model.train()  # the user is mid-training, with a frozen parameter and a gradient to keep
    first.requires_grad_(False)
    last.grad = torch.ones_like(last)
    before = snapshot(model)
    try:
        forward = b.explainer.forward(b.image)  # the default layer; each target costs a backward
        for target in targets:
            check(b.explainer.explain(forward, target, method=method), b.shape, layers[default])
        del forward
        many = b.explainer.explain_many(b.image, targets, method=method, layer=others)
        assert many.layers == [layers[r] for r in others]
        for k in range(len(targets)):
            for readable in others:
                check(many[k, readable], b.shape, layers[readable])  # readable names index too
        assert_untouched(model, before)
    finally:
        model.eval()
        first.requires_grad_(True)
        last.grad = None


@pytest.mark.parametrize("name, dims", CASES)
def test_every_readable_name_is_an_explainable_layer(built, name, dims):
    b = built(name, dims)
    assert not any(m.training for m in b.model.modules())  # build() gives an eval-mode model
    fam = zoo.family(name)
    assert fam.default in b.names
    assert b.explainer.default_layer() == b.names[fam.default] == EXPECTED[name][fam.default]
    for readable, module in EXPECTED[name].items():
        assert b.names[readable] == module
    infos = {info.name: info for info in b.explainer.layers(b.image)}
    for readable, module in b.names.items():
        assert find_layer(b.model, module)[0] == module
        assert infos[module].calls > 0 and infos[module].explainable, readable
    # every readable layer at once: the predicted class's score depends on each of them
    target = Target(int(b.predicted[PIXEL[dims]]), regions.predicted())
    result = b.explainer.explain_many(b.image, [target], layer=list(b.names))
    assert set(result.layers) == set(b.names.values())
    for readable, module in b.names.items():
        assert torch.isfinite(result[module].raw).all() and result[module].raw.any(), readable


def test_unknown_family_suggests_the_closest():
    with pytest.raises(SegcamError, match="unknown model family 'segfromer'. Did you mean segformer"):
        zoo.family("segfromer")


@pytest.mark.parametrize("name, dims, message", [
    ("unet", 4, "'unet' is 2/3-D, not 4-D"),
    ("segformer", 3, "'segformer' is 2-D, not 3-D"),
    ("smp-unet", 3, "'smp-unet' is 2-D, not 3-D"),
])
def test_build_rejects_unsupported_dims(name, dims, message):
    if not zoo.FAMILIES[name].available():
        pytest.skip(f"needs {zoo.FAMILIES[name].requires}")
    with pytest.raises(SegcamError, match=message):
        zoo.build(name, dims=dims)


def test_missing_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "segmentation_models_pytorch" else real(name, *a))
    with pytest.raises(SegcamError, match=r"pip install 'segcam\[smp\]'"):
        zoo.family("smp-unet")
    monkeypatch.setitem(zoo.FAMILIES, "needs-x", zoo.Family(
        "needs-x", zoo.FAMILIES["unet"].build, zoo.FAMILIES["unet"].layers, "bottleneck",
        requires="segcam_no_such_package"))
    with pytest.raises(SegcamError, match=r"needs the package 'segcam_no_such_package'.*segcam\["):
        zoo.family("needs-x")


def test_every_required_package_is_an_extra():
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    for fam in zoo.FAMILIES.values():
        if fam.requires is not None:
            assert zoo.EXTRAS.get(fam.requires, fam.requires) in extras, fam.name


def test_unetr_needs_its_input_size(built):
    if not zoo.FAMILIES["unetr"].available():
        pytest.skip("needs monai")
    b = built("unetr", 2)
    with pytest.raises(ModelError, match=r"failed on an input of shape \(1, 3, 48, 48\)"):
        b.explainer.explain(torch.rand(3, 48, 48), Target(0))
    assert "input 64×64 (2-D) / 32³ (3-D)" in zoo.FAMILIES["unetr"].description
