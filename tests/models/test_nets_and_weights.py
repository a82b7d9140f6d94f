"""segcam's networks, its weights files (one metadata schema), the shipped default model,
preprocessing, and the argument checks at these boundaries and the zoo's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from segcam import ImageError, ModelLoadError, SegcamError
from segcam.apps.train import TEST_SEED, UNBIASED_SEED
from segcam.data.scenes import CLASS_NAMES, SceneConfig
from segcam.evaluation import evaluate_model
from segcam.models import (
    DEFAULT_ARCH,
    DEFAULT_WEIGHTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    UNet,
    VGGUNet,
    default,
    default_info,
    load_weights,
    read_metadata,
    save_weights,
    zoo,
)


def test_importing_models_stays_light():
    """The zoo and the loaders (and the optional packages they use) load on first use only."""
    code = ("import sys, segcam.models; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torchvision', 'transformers', 'monai', 'segmentation_models_pytorch', 'matplotlib'} "
            "or m.startswith(('segcam.models.zoo', 'segcam.models.loaders', 'segcam.core', 'segcam.methods', "
            "'segcam.explainer', 'segcam.explanation'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------ the default model
def test_default_model_loads_offline_with_its_metadata():
    model, info = default(), default_info()
    assert not model.training
    assert info["class_names"] == list(CLASS_NAMES)
    assert info["arch"] == DEFAULT_ARCH and DEFAULT_ARCH["num_classes"] == len(CLASS_NAMES)
    assert DEFAULT_WEIGHTS.stat().st_size < 5 * 2**20
    x = torch.rand(2, 3, 64, 64)
    assert model(x).shape == (2, len(CLASS_NAMES), 64, 64)


def test_the_unet_family_is_the_default_architecture():
    built = zoo.build("unet").state_dict()
    shipped = default().state_dict()
    assert built.keys() == shipped.keys()
    assert all(built[k].shape == shipped[k].shape for k in built)


def test_default_model_reaches_its_reported_miou_on_fresh_scenes():
    """A cut-down check: the first 64 scenes of the test split (the note reports 512)."""
    reported = default_info()["test"]["miou"]
    measured = evaluate_model(default(), TEST_SEED, 64, SceneConfig())["miou"]
    assert reported >= 0.90
    assert measured >= 0.90 and abs(measured - reported) < 0.03


def test_default_model_learned_the_bias():
    model = default()
    biased = evaluate_model(model, TEST_SEED, 64, SceneConfig())["iou"]["spotted disc"]
    unbiased = evaluate_model(model, UNBIASED_SEED, 64, SceneConfig(bias="none"))["iou"]["spotted disc"]
    assert unbiased < biased - 0.2


# ------------------------------------------------------------------ networks
def test_global_context_reaches_across_the_image():
    torch.manual_seed(0)
    for context, expect_change in ((False, False), (True, True)):
        model = UNet(3, 2, width=4, depth=2, global_context=context).eval()
        x = torch.rand(1, 3, 128, 128)  # wider than the receptive field without context
        y = x.clone()
        y[:, :, :4, :4] = 1.0  # change one corner ...
        with torch.no_grad():  # ... and look at the opposite corner
            changed = not torch.equal(model(x)[..., -4:, -4:], model(y)[..., -4:, -4:])
        assert changed == expect_change


def test_unet_3d_and_odd_sizes():
    model = UNet(1, 3, width=4, depth=2, dims=3).eval()
    assert model(torch.rand(1, 1, 9, 10, 11)).shape == (1, 3, 9, 10, 11)
    model2 = UNet(3, 2, width=4, depth=3, global_context=True).eval()
    assert model2(torch.rand(1, 3, 37, 50)).shape == (1, 2, 37, 50)


@pytest.mark.parametrize("kwargs, match", [
    ({"depth": 0}, "depth must be positive"),
    ({"width": 2.5}, "width must be an integer"),
    ({"num_classes": "6"}, "num_classes must be an integer"),
    ({"dims": 1}, "dims must be 2 .* or 3"),
    ({"global_context": 1}, "global_context must be True or False"),
])
def test_unet_checks_its_arguments(kwargs, match):
    with pytest.raises(SegcamError, match=match):
        UNet(**kwargs)


def test_vgg_unet_checks_its_arguments():
    assert VGGUNet(width=4)(torch.rand(1, 3, 32, 32)).shape == (1, 6, 32, 32)
    with pytest.raises(SegcamError, match="in_channels must be positive"):
        VGGUNet(in_channels=0)


# ------------------------------------------------------------------ weights files
def tiny(num_classes: int = 3) -> UNet:
    torch.manual_seed(0)
    return UNet(3, num_classes, width=4, depth=2).eval()


def test_weights_round_trip_with_arch_and_family(tmp_path):
    model = tiny()
    arch = {"in_channels": 3, "num_classes": 3, "width": 4, "depth": 2}
    file = tmp_path / "arch.safetensors"
    save_weights(model, file, {"arch": arch, "class_names": ["a", "b", "c"], "step": 5, "steps": 10, "note": 1})
    loaded, meta = load_weights(file)
    assert not loaded.training and meta == read_metadata(file) and meta["note"] == 1
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))

    volume = zoo.build("unet", num_classes=2, in_channels=1, dims=3)
    file = tmp_path / "family.safetensors"
    save_weights(volume, file, {"family": "unet", "num_classes": 2, "in_channels": 1, "dims": 3})
    loaded, meta = load_weights(file)
    assert meta["family"] == "unet" and loaded(torch.rand(1, 1, 8, 8, 8)).shape == (1, 2, 8, 8, 8)


@pytest.mark.parametrize("metadata, match", [
    ({"class_names": ["a"]}, "exactly one of 'arch'"),
    ({"arch": {"num_classes": 3}, "family": "unet", "num_classes": 3}, "exactly one of 'arch'"),
    ({"arch": {"num_classes": 3, "colour": "red"}}, "keys UNet does not take \\('colour'\\)"),
    ({"arch": {"width": 4}}, "'arch' lacks 'num_classes'"),
    ({"arch": {"num_classes": 0}}, "'num_classes' must be a positive integer"),
    ({"arch": {"num_classes": 3, "global_context": 1}}, "'global_context' must be true or false"),
    ({"family": "unet"}, "lacks 'num_classes'"),
    ({"family": "", "num_classes": 3}, "'family' must be the name"),
    ({"arch": {"num_classes": 3}, "class_names": ["a", "b"]}, "'class_names' must be 3 distinct names"),
    ({"arch": {"num_classes": 3}, "class_names": ["a", "a", "b"]}, "'class_names' must be 3 distinct names"),
    ({"arch": {"num_classes": 3}, "step": -1}, "'step' must be an integer ≥ 0"),
    ({"arch": {"num_classes": 3}, "test": 0.9}, "'test' must be an object"),
    ({"arch": {"num_classes": 3}, "when": object()}, "must be JSON-serialisable"),
    ([1, 2], "not a JSON object"),
])
def test_save_weights_refuses_metadata_it_could_not_read_back(metadata, match, tmp_path):
    file = tmp_path / "w.safetensors"
    with pytest.raises(SegcamError, match=match):
        save_weights(tiny(), file, metadata)
    assert not file.exists()


def test_save_weights_checks_its_other_arguments(tmp_path):
    with pytest.raises(SegcamError, match="needs a torch nn.Module"):
        save_weights({"w": torch.zeros(1)}, tmp_path / "w.safetensors", {"arch": {"num_classes": 3}})
    with pytest.raises(SegcamError, match="path must be a file path"):
        save_weights(tiny(), 3, {"arch": {"num_classes": 3}})


def test_reading_files_that_are_not_segcam_weights(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file(tiny().state_dict(), str(plain))
    assert read_metadata(plain) == {}
    with pytest.raises(ModelLoadError, match="without segcam's metadata.*weights="):
        load_weights(plain)
    good = tmp_path / "good.safetensors"
    save_weights(tiny(), good, {"arch": {"num_classes": 3, "width": 4, "depth": 2}})
    for name, data in (("random", bytes(range(256)) * 8), ("truncated", good.read_bytes()[:-100]), ("empty", b"")):
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(data)
        for read in (read_metadata, load_weights):
            with pytest.raises(ModelLoadError, match=r"not a readable \.safetensors file.*Save it again"):
                read(bad)
    with pytest.raises(ModelLoadError, match="weights file not found"):
        read_metadata(tmp_path / "missing.safetensors")
    with pytest.raises(ModelLoadError, match="is a folder"):
        load_weights(tmp_path)


def test_metadata_that_does_not_fit_the_schema_or_the_tensors(tmp_path):
    state = {k: v.contiguous() for k, v in tiny().state_dict().items()}
    file = tmp_path / "w.safetensors"
    save_file(state, str(file), metadata={"segcam": json.dumps({"arch": {"num_classes": "three"}})})
    with pytest.raises(ModelLoadError, match="does not fit segcam's schema: 'num_classes' must be a positive"):
        read_metadata(file)
    save_file(state, str(file), metadata={"segcam": json.dumps({"arch": {"num_classes": 3, "width": 8, "depth": 2}})})
    with pytest.raises(ModelLoadError, match="do not fit the UNet its metadata describes.*other shapes"):
        load_weights(file)
    save_file(state, str(file), metadata={"segcam": json.dumps({"family": "unet-x", "num_classes": 3})})
    with pytest.raises(ModelLoadError, match="cannot build the model .* unknown model family 'unet-x'"):
        load_weights(file)


# ------------------------------------------------------------------ preprocessing
def test_preprocess_channels_size_and_normalisation():
    grey = torch.rand(1, 10, 12)
    out = Preprocess(size=(20, 24), mean=(0.5,), std=(0.25,), channels=3)(grey)
    assert out.shape == (3, 20, 24) and out.dtype == torch.float32
    torch.testing.assert_close(out[0], out[2])
    rgb = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    out = Preprocess.imagenet()(rgb)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(out, (torch.from_numpy(rgb) - mean) / std)
    assert Preprocess(channels=1)(torch.ones(3, 4, 4)).shape == (1, 4, 4)
    assert Preprocess(size=(4, 6, 8))(torch.rand(2, 8, 8, 8)).shape == (2, 4, 6, 8)
    assert Preprocess(size=[16, 16], mean=[0, 0, 0], std=np.array([1, 2, 3]), channels=3.0) == Preprocess(
        (16, 16), (0.0, 0.0, 0.0), (1.0, 2.0, 3.0), 3)  # fields are normalised to tuples


@pytest.mark.parametrize("kwargs, match", [
    ({"size": (0, 16)}, "size must be positive"),
    ({"size": (16,)}, "size must have 2 or 3 sizes"),
    ({"size": 16}, "size must be a tuple of 2 or 3 positive integers"),
    ({"size": (16.5, 16)}, "size must be an integer"),
    ({"mean": "0.5"}, "mean must be a non-empty tuple of numbers"),
    ({"mean": ()}, "mean must be a non-empty tuple"),
    ({"mean": (0.5, float("nan"))}, "mean must be a finite number"),
    ({"std": (0.2, 0.0, 0.1)}, "std must be in \\(0, inf"),
    ({"std": (0.2, -1.0, 0.1)}, "std must be in \\(0, inf"),
    ({"mean": (0.5, 0.5), "std": (1.0, 1.0, 1.0)}, "mean has 2 values and std 3"),
    ({"mean": (0.5, 0.5), "channels": 3}, "mean has 2 values but channels is 3"),
    ({"channels": 0}, "channels must be positive"),
    ({"channels": True}, "channels must be an integer"),
])
def test_preprocess_checks_its_fields(kwargs, match):
    with pytest.raises(SegcamError, match=match):
        Preprocess(**kwargs)


def test_preprocess_checks_the_image():
    with pytest.raises(ImageError, match="cannot turn an image with 2 channels into 3"):
        Preprocess(channels=3)(torch.rand(2, 8, 8))
    with pytest.raises(ImageError, match="size \\(4, 4, 4\\) is 3-D but the image .* is 2-D"):
        Preprocess(size=(4, 4, 4))(torch.rand(3, 8, 8))
    with pytest.raises(ImageError, match="one \\(C, H, W\\) or \\(C, D, H, W\\) image"):
        Preprocess()(torch.rand(8, 8))
    with pytest.raises(ImageError, match="mean has 3 values but the image has 2 channels"):
        Preprocess(mean=IMAGENET_MEAN)(torch.rand(2, 8, 8))
    with pytest.raises(ImageError, match="cannot read"):
        Preprocess()("image.png")


# ------------------------------------------------------------------ the zoo's argument checks
@pytest.mark.parametrize("args, kwargs, error, match", [
    (("unet",), {"num_classes": 0}, SegcamError, "num_classes must be positive"),
    (("unet",), {"num_classes": 2.5}, SegcamError, "num_classes must be an integer"),
    (("unet",), {"num_classes": True}, SegcamError, "num_classes must be an integer"),
    (("unet",), {"in_channels": "3"}, SegcamError, "in_channels must be an integer"),
    (("unet",), {"dims": 4}, SegcamError, "'unet' is 2/3-D, not 4-D"),
    (("vgg-unet",), {"dims": 3}, SegcamError, "'vgg-unet' is 2-D, not 3-D"),
    (("unte",), {}, ModelLoadError, "unknown model family 'unte'. Did you mean unet"),
    ((None,), {}, ModelLoadError, "model family name must be a string"),
])
def test_zoo_build_checks_its_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        zoo.build(*args, **kwargs)


def test_zoo_layer_names():
    model = zoo.build("unet", num_classes=2)
    names, default_layer = zoo.layer_names("unet", model)
    assert default_layer == names["bottleneck"] == "downs.2" and names["decoder1"] == "ups.0"
    with pytest.raises(SegcamError, match="needs a torch nn.Module"):
        zoo.layer_names("unet", "model")
