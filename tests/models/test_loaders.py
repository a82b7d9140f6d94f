"""segcam.models.loaders: every spec form loads offline, in eval mode, with the same outputs as
the original model and the family's layer names; pickles are refused unless allowed, and every
mistake gets a clear error."""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import warnings
import zipfile

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import segcam
from segcam import SegcamError, SegcamWarning
from segcam.data.scenes import CLASS_NAMES
from segcam.models import UNet, default, default_info, save_weights, zoo
from segcam.models.loaders import LoadedModel, ModelLoadError, UnsafePickleError, load_model
from segcam.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

X = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def small_unet(seed: int = 1, num_classes: int = 4) -> UNet:
    """A tiny U-Net with seeded weights and non-trivial BN statistics."""
    torch.manual_seed(seed)
    model = UNet(3, num_classes, width=4, depth=2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def out(result) -> torch.Tensor:
    if hasattr(result, "logits"):
        return result.logits
    return result["out"] if isinstance(result, dict) else result


def check(loaded: LoadedModel, reference: nn.Module | None = None, x: torch.Tensor = X) -> torch.Tensor:
    """Eval mode everywhere, and (with a reference) the same outputs as the reference."""
    assert isinstance(loaded, LoadedModel)
    assert not any(m.training for m in loaded.model.modules())
    assert isinstance(loaded.preprocess, Preprocess) and loaded.source
    modules = dict(loaded.model.named_modules())
    assert all(module in modules for module in loaded.layer_names.values())
    assert (loaded.default_layer is None) == (loaded.family is None) == (not loaded.layer_names)
    with torch.no_grad():
        y = out(loaded.model(x))
        if reference is not None:
            torch.testing.assert_close(y, out(reference(x)), rtol=1e-5, atol=1e-6)
    return y


FACTORY = """
import torch
from segcam.models import UNet

CALLS = []

def build(num_classes=4):
    CALLS.append(num_classes)
    torch.manual_seed(123)  # other weights than the saved model's
    return UNet(3, num_classes, width=4, depth=2)

def build_fixed():
    CALLS.append("fixed")
    return UNet(3, 4, width=4, depth=2)

def not_a_model():
    return 42

def plain():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))

def broken(num_classes=3):
    raise RuntimeError("out of cheese")

VALUE = 3
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    name = f"byom_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    (tmp_path / f"{name}_bad.py").write_text("import not_installed_package_xyz\n")
    (tmp_path / f"{name}_raises.py").write_text("raise ValueError('config missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for mod in (name, f"{name}_bad", f"{name}_raises"):
        sys.modules.pop(mod, None)


class Evil:
    """Unpickling this calls os.system: a file appears if the pickle is ever executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvilExec:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


# ------------------------------------------------------------------ default and zoo
def test_default_model():
    loaded = load_model("default")
    check(loaded, default())
    assert loaded.class_names == default_info()["class_names"]
    assert loaded.family == "unet" and loaded.preprocess.channels == 3
    assert loaded.layer_names["bottleneck"] == loaded.default_layer == "downs.2"
    assert "default" in loaded.source


def test_default_refuses_weights_and_other_classes(tmp_path):
    file = tmp_path / "w.pt"
    torch.save(small_unet().state_dict(), file)
    with pytest.raises(ModelLoadError, match="zoo:unet"):
        load_model("default", weights=file)
    with pytest.raises(ModelLoadError, match="zoo:unet"):
        load_model("default", num_classes=3)


def test_zoo_family_random():
    loaded = load_model("unet")
    assert loaded.family == "unet" and loaded.preprocess == zoo.family("unet").preprocess
    assert check(loaded).shape[1] == 6
    assert loaded.class_names == list(CLASS_NAMES)
    assert "random" in loaded.source
    for spec in ("zoo:unet", "ZOO:unet", "zoo:UNet"):
        assert load_model(spec).family == "unet"
    three = load_model("zoo:unet", num_classes=3)
    assert three.model.head.out_channels == 3 and not three.model.training
    assert three.class_names is None


def test_zoo_with_weights_infers_classes(tmp_path):
    original = zoo.build("unet", num_classes=3)
    with torch.no_grad():
        for p in original.parameters():
            p.add_(0.1)
    file = tmp_path / "unet3.pt"
    torch.save({"epoch": 7, "model_state_dict": original.state_dict()}, file)
    loaded = load_model("zoo:unet", weights=file)  # 3 classes read from the weights
    check(loaded, original)
    assert loaded.class_names is None and str(file.resolve()) in loaded.source


def test_zoo_segcam_weights_file_gives_class_names(tmp_path):
    original = zoo.build("unet", num_classes=6)
    file = tmp_path / "unet.safetensors"
    save_weights(original, file, {"family": "unet", "num_classes": 6, "class_names": list("abcdef")})
    loaded = load_model("zoo:unet", weights=file)
    check(loaded, original)
    assert loaded.class_names == list("abcdef")


def test_layer_names_come_from_the_family(factory_module):
    """The engine reads readable layer names and the default layer from LoadedModel, not the zoo."""
    loaded = load_model("zoo:vgg-unet")
    names, default_layer = zoo.layer_names("vgg-unet", loaded.model)
    assert loaded.layer_names == names and loaded.default_layer == default_layer == "encoder.block5"
    assert loaded.layer_names["encoder3"] == "encoder.block3"
    own = load_model(f"{factory_module}:build")  # segcam's UNet class: the unet family
    assert own.family == "unet" and own.default_layer == "downs.1" and own.layer_names["stem"] == "stem"
    unknown = load_model(f"{factory_module}:plain")
    assert unknown.family is None and unknown.layer_names == {} and unknown.default_layer is None
    pre = Preprocess(size=(32, 32))
    replaced = load_model("zoo:unet", preprocess=pre)  # replacing the preprocessing keeps the rest
    assert replaced.preprocess is pre and replaced.default_layer == "downs.2" and replaced.family == "unet"


def test_unknown_zoo_family():
    with pytest.raises(SegcamError, match="vgg-unet"):
        load_model("zoo:vgg-unte")


def test_plain_name_that_is_also_a_path_is_ambiguous(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unet").mkdir()
    with pytest.raises(ModelLoadError, match=r"zoo:unet.*\./unet"):
        load_model("unet")
    assert load_model("zoo:unet").family == "unet"


# ------------------------------------------------------------------ factories and weights files
def _save(kind: str, model: nn.Module, path):
    state = model.state_dict()
    if kind == "state-dict":
        torch.save(state, path)
    elif kind == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif kind == "wrapped-state_dict":
        torch.save({"state_dict": state, "epoch": 3, "optimizer": {"lr": 0.1}}, path)
    elif kind == "wrapped-model":
        torch.save({"model": state, "step": 10}, path)
    elif kind == "dataparallel":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif kind == "lightning":
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, path)


@pytest.mark.parametrize("kind", ["state-dict", "safetensors", "wrapped-state_dict", "wrapped-model",
                                  "dataparallel", "lightning"])
def test_factory_with_weights(kind, tmp_path, factory_module):
    original = small_unet()
    file = tmp_path / ("w.safetensors" if kind == "safetensors" else "w.pt")
    _save(kind, original, file)
    loaded = load_model(f"{factory_module}:build", weights=file)
    check(loaded, original)
    assert loaded.family == "unet" and loaded.class_names is None
    assert f"{factory_module}:build()" in loaded.source


def test_factory_gets_num_classes_only_when_given(factory_module):
    load_model(f"{factory_module}:build")
    load_model(f"{factory_module}:build", num_classes=5)
    load_model(f"{factory_module}:build_fixed")
    assert sys.modules[factory_module].CALLS == [4, 5, "fixed"]
    with pytest.raises(ModelLoadError, match="takes no num_classes"):
        load_model(f"{factory_module}:build_fixed", num_classes=3)


def test_factory_from_installed_package():
    loaded = load_model("segcam.models:UNet", num_classes=4)
    assert isinstance(loaded.model, UNet) and check(loaded).shape[1] == 4
    assert loaded.family == "unet" and loaded.preprocess == Preprocess()


def test_factory_errors(factory_module):
    with pytest.raises(ModelLoadError, match="no module named 'no_such_module_xyz'"):
        load_model("no_such_module_xyz:build")
    with pytest.raises(ModelLoadError, match="not_installed_package_xyz.*not installed"):
        load_model(f"{factory_module}_bad:build")
    with pytest.raises(ModelLoadError, match="ValueError: config missing"):
        load_model(f"{factory_module}_raises:build")
    with pytest.raises(ModelLoadError, match="has no attribute 'UNte'.*Did you mean UNet"):
        load_model("segcam.models:UNte")
    with pytest.raises(ModelLoadError, match="returned a int, not a torch nn.Module"):
        load_model(f"{factory_module}:not_a_model")
    with pytest.raises(ModelLoadError, match="RuntimeError: out of cheese"):
        load_model(f"{factory_module}:broken")
    with pytest.raises(ModelLoadError, match="not something callable"):
        load_model(f"{factory_module}:VALUE")


def test_mismatched_keys_are_listed(tmp_path):
    bigger = UNet(3, 4, width=4, depth=3)
    file = tmp_path / "depth3.pt"
    torch.save(bigger.state_dict(), file)
    with pytest.raises(ModelLoadError) as info:
        load_model("segcam.models:UNet", weights=file)  # UNet() has depth 4 and width 16
    msg = str(info.value)
    assert str(file.resolve()) in msg and "missing from the file" in msg and "shapes" in msg
    assert "'downs.3." in msg and "stem.0.weight: file (4, 3, 3, 3) vs model (16, 3, 3, 3)" in msg

    small = small_unet(num_classes=4).state_dict()
    state = {k.replace("head.", "classifier."): v for k, v in small.items()}
    file2 = tmp_path / "renamed.pt"
    torch.save(state, file2)
    with pytest.raises(ModelLoadError, match=r"not in the model \('classifier.weight'"):
        load_model("segcam.models:UNet", weights=file2)


def test_class_count_mismatch_suggests_num_classes(tmp_path, factory_module):
    file = tmp_path / "w.pt"
    torch.save(small_unet(num_classes=7).state_dict(), file)
    with pytest.raises(ModelLoadError, match="7 classes, pass num_classes"):
        load_model(f"{factory_module}:build", weights=file)
    check(load_model(f"{factory_module}:build", weights=file, num_classes=7))


def test_weights_that_are_not_a_state_dict(tmp_path):
    file = tmp_path / "w.pt"
    torch.save({"epoch": 3, "lr": 0.1}, file)
    with pytest.raises(ModelLoadError, match="not a state dict"):
        load_model("segcam.models:UNet", weights=file)
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a file PyTorch can read"):
        load_model("segcam.models:UNet", weights=junk)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ModelLoadError, match="not a readable .safetensors"):
        load_model("segcam.models:UNet", weights=bad)


# ------------------------------------------------------------------ missing files and unknown specs
def test_missing_files_are_named(tmp_path):
    missing = tmp_path / "nope" / "model.pt"
    with pytest.raises(ModelLoadError, match=f"model file not found: {missing}"):
        load_model(str(missing))
    with pytest.raises(ModelLoadError, match=f"weights file not found: {tmp_path / 'w.pt'}"):
        load_model("zoo:unet", weights=tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match="model file not found: .*model.pt2"):
        load_model("model.pt2")
    with pytest.raises(ModelLoadError, match="never downloads"):
        load_model("nvidia/segformer-b0-finetuned-ade-512-512")


def test_unknown_spec_lists_the_forms():
    with pytest.raises(ModelLoadError) as info:
        load_model("unett")
    msg = str(info.value)
    assert "unknown model spec 'unett'" in msg and "Did you mean" in msg and "unet" in msg
    for form in ("default", "zoo:NAME", "torchvision:NAME", "package.module:function", "PATH",
                 "allow_pickle"):
        assert form in msg
    with pytest.raises(ModelLoadError, match="accepted model specs"):
        load_model("   ")
    with pytest.raises(ModelLoadError, match="num_classes must be positive"):
        load_model("zoo:unet", num_classes=0)
    with pytest.raises(ModelLoadError, match="unknown model spec 'zoo'"):
        load_model("zoo")  # a prefix without its colon is no zoo spec


@pytest.mark.parametrize("kwargs, error, match", [
    ({"spec": 42}, ModelLoadError, "model spec must be a string or a path, got 42 \\(int\\)"),
    ({"spec": b"default"}, ModelLoadError, "must be a string or a path"),
    ({"spec": None}, ModelLoadError, "must be a string or a path"),
    ({"spec": nn.Conv2d(3, 4, 1)}, ModelLoadError, "give it to segcam.Explainer"),
    ({"weights": 3}, ModelLoadError, "weights file must be a file path"),
    ({"weights": ""}, ModelLoadError, "weights file must be a file path"),
    ({"num_classes": 2.5}, ModelLoadError, "num_classes must be an integer, got 2.5"),
    ({"num_classes": True}, ModelLoadError, "num_classes must be an integer"),
    ({"num_classes": "3"}, ModelLoadError, "num_classes must be an integer"),
    ({"num_classes": -2}, ModelLoadError, "num_classes must be positive"),
    ({"preprocess": {"size": (32, 32)}}, SegcamError, "preprocess must be a segcam.models.Preprocess"),
    ({"allow_pickle": "yes"}, SegcamError, "allow_pickle must be True or False"),
    ({"allow_pickle": 1}, SegcamError, "allow_pickle must be True or False"),
])
def test_load_model_checks_its_arguments(kwargs, error, match):
    kwargs = {"spec": "zoo:unet", **kwargs}
    with pytest.raises(error, match=match):
        load_model(kwargs.pop("spec"), **kwargs)


def test_integral_num_classes_are_accepted():
    assert load_model("zoo:unet", num_classes=3.0).model.head.out_channels == 3


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="without config.json"):
        load_model(tmp_path)


def test_state_dict_as_spec_needs_an_architecture(tmp_path):
    for name, save in (("w.pt", lambda p: torch.save(small_unet().state_dict(), p)),
                       ("w.safetensors", lambda p: save_file(small_unet().state_dict(), str(p)))):
        file = tmp_path / name
        save(file)
        with pytest.raises(ModelLoadError, match="holds only weights.*--weights"):
            load_model(file)


def test_segcam_safetensors_as_spec(tmp_path):
    original = small_unet(num_classes=6)
    file = tmp_path / "trained.safetensors"
    arch = {"in_channels": 3, "num_classes": 6, "width": 4, "depth": 2}
    save_weights(original, file, {"arch": arch, "class_names": list("abcdef")})
    loaded = load_model(file)
    check(loaded, original)
    assert loaded.class_names == list("abcdef") and loaded.family == "unet"
    with pytest.raises(ModelLoadError, match="carries its own weights"):
        load_model(file, weights=file)
    with pytest.raises(ModelLoadError, match="fixes its own classes"):
        load_model(file, num_classes=3)


# ------------------------------------------------------------------ damaged .safetensors files
def damaged_files(tmp_path) -> dict:
    """Random bytes, a truncated segcam file and a truncated plain safetensors file."""
    good = tmp_path / "good.safetensors"
    save_weights(small_unet(num_classes=6), good,
                 {"arch": {"in_channels": 3, "num_classes": 6, "width": 4, "depth": 2}})
    plain = tmp_path / "plain.safetensors"
    save_file(small_unet().state_dict(), str(plain))
    files = {"random": os.urandom(4096), "truncated": good.read_bytes()[:-500],
             "truncated-plain": plain.read_bytes()[: plain.stat().st_size // 2], "empty": b""}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        paths[name].write_bytes(data)
    paths["truncated-no-suffix"] = tmp_path / "model.bin"  # found by content, not by suffix
    paths["truncated-no-suffix"].write_bytes(files["truncated"])
    return paths


def test_damaged_safetensors_as_the_model_say_so(tmp_path):
    """Issue 8: a damaged file must not be reported as one without segcam's metadata."""
    for name, file in damaged_files(tmp_path).items():
        with pytest.raises(ModelLoadError) as info:
            load_model(file)
        msg = str(info.value)
        assert "not a readable .safetensors file" in msg and str(file.resolve()) in msg, name
        assert "segcam's metadata" not in msg and "holds only weights" not in msg, name
        assert "save it again" in msg.lower(), name


def test_damaged_safetensors_as_weights_say_so(tmp_path, factory_module):
    for file in damaged_files(tmp_path).values():
        for spec in ("zoo:unet", f"{factory_module}:build", "torchvision:fcn_resnet50"):
            with pytest.raises(ModelLoadError, match="not a readable .safetensors file"):
                load_model(spec, weights=file)


def test_safetensors_with_broken_segcam_metadata(tmp_path):
    state = {k: v.contiguous() for k, v in small_unet().state_dict().items()}
    for metadata, match in (({"segcam": "{not json"}, "not valid JSON"),
                            ({"segcam": json.dumps({"num_classes": 4})}, "exactly one of 'arch'"),
                            ({"segcam": json.dumps({"arch": {"num_classes": 4, "colour": 1}})}, "'colour'")):
        file = tmp_path / "broken.safetensors"
        save_file(state, str(file), metadata=metadata)
        for how in ("spec", "weights"):
            with pytest.raises(ModelLoadError, match=f"{match}.*save the file again"):
                load_model(file) if how == "spec" else load_model("zoo:unet", weights=file)


# ------------------------------------------------------------------ pickles
def test_full_model_pickle_refused_unless_allowed(tmp_path):
    original = small_unet()
    file = tmp_path / "full.pt"
    torch.save(original, file)
    with pytest.raises(UnsafePickleError) as info:
        load_model(file)
    msg = str(info.value)
    assert str(file.resolve()) in msg and "pickled Python objects" in msg and "segcam.models.nets.UNet" in msg
    assert "allow_pickle=True" in msg and "--allow-pickle" in msg and "trust" in msg
    with pytest.raises(UnsafePickleError):  # the same as a weights file
        load_model("segcam.models:UNet", weights=file)

    loaded = load_model(file, allow_pickle=True)
    check(loaded, original)
    assert loaded.family == "unet" and "allow_pickle" in loaded.source


def test_full_model_pickle_as_weights_with_allow_pickle(tmp_path, factory_module):
    original = small_unet()
    file = tmp_path / "full.pt"
    torch.save(original, file)
    check(load_model(f"{factory_module}:build", weights=file, allow_pickle=True), original)


@pytest.mark.parametrize("evil", [Evil, EvilExec])
@pytest.mark.parametrize("how", ["spec", "weights", "wrapped", "raw-pickle"])
def test_malicious_pickle_never_runs(evil, how, tmp_path):
    marker = tmp_path / "pwned"
    file = tmp_path / "evil.pt"
    payload = evil(marker)
    if how == "raw-pickle":
        file.write_bytes(pickle.dumps(payload))
    elif how == "wrapped":
        torch.save({"state_dict": small_unet().state_dict(), "extra": payload}, file)
    else:
        torch.save(payload, file)
    with pytest.raises(UnsafePickleError, match="could run arbitrary code.*allow_pickle=True"):
        if how == "spec" or how == "raw-pickle":
            load_model(file)
        else:
            load_model("segcam.models:UNet", weights=file)
    assert not marker.exists()


# ------------------------------------------------------------------ TorchScript and torch.export
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                            "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript(how, tmp_path):
    from helpers import linear_seg

    original = small_unet() if how == "trace" else linear_seg(in_ch=3, classes=4)
    scripted = torch.jit.trace(original, X, check_trace=False) if how == "trace" else torch.jit.script(original)
    file = tmp_path / "model.bin"  # the suffix says nothing: the content decides
    torch.jit.save(scripted, str(file))
    with pytest.warns(SegcamWarning, match="TorchScript"):
        loaded = load_model(file)
    check(loaded, original)
    assert loaded.family is None and "TorchScript" in loaded.source
    with pytest.raises(segcam.SegcamError, match="TorchScript models do not support hooks"):
        segcam.Explainer(loaded.model)
    with pytest.raises(ModelLoadError, match="pass it as the model spec"):
        load_model("segcam.models:UNet", weights=file)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    original = small_unet()
    file = tmp_path_factory.mktemp("export") / "model.pt2"
    torch.export.save(torch.export.export(original, (X,)), str(file))
    return original, file


def test_exported_program(exported):
    original, file = exported
    loaded = load_model(file)
    check(loaded, original)
    assert loaded.preprocess == Preprocess(size=(16, 16), channels=3)  # exports are shape-specialised
    assert "exported program" in loaded.source
    names = dict(loaded.model.named_modules())
    assert "downs.1" in names and "head" in names  # unflattened: layers keep their names
    a = segcam.Explainer(loaded.model).explain(X[0], segcam.Target(1), layer="downs.1")
    b = segcam.Explainer(original).explain(X[0], segcam.Target(1), layer="downs.1")
    torch.testing.assert_close(a.map, b.map)


def test_exported_program_detected_by_content(exported, tmp_path):
    original, file = exported
    renamed = tmp_path / "model.pt"
    renamed.write_bytes(file.read_bytes())
    check(load_model(renamed), original)
    with pytest.raises(ModelLoadError, match="carries its own weights"):
        load_model(renamed, weights=renamed)


@pytest.mark.parametrize("member", ["sample_inputs", "weight"])
def test_exported_program_with_pickle_payload_refused(exported, member, tmp_path):
    """torch.export.load unpickles some members without restriction: segcam checks them first."""
    _, file = exported
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save((Evil(marker),), buf)
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(file) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if member == "sample_inputs" and item.filename.endswith("data/sample_inputs/model.pt"):
                data = buf.getvalue()
            if member == "weight" and item.filename.endswith("data/weights/model_weights_config.json"):
                config = json.loads(data)
                entry = next(iter(config["config"].values()))
                entry["use_pickle"] = True
                data = json.dumps(config).encode()
            if member == "weight" and item.filename.endswith("data/weights/weight_0"):
                data = buf.getvalue()
            dst.writestr(item, data)
    with pytest.raises(UnsafePickleError, match="exported program.*pickled Python objects.*allow_pickle"):
        load_model(evil)
    assert not marker.exists()


# ------------------------------------------------------------------ torchvision
# torchvision's randomly initialised MobileNets take ~2 s per CPU forward pass whatever the input
# size, so these compare state dicts instead (same builder + same tensors = same outputs).
@pytest.fixture(scope="module")
def tv():
    return pytest.importorskip("torchvision.models.segmentation")


def same_state(a: nn.Module, b: nn.Module, skip: str = "\0") -> None:
    sa = a.state_dict()
    sb = {k: v for k, v in b.state_dict().items() if not k.startswith(skip)}
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_torchvision_random(tv):
    loaded = load_model("torchvision:lraspp_mobilenet_v3_large", num_classes=3)
    assert loaded.model.classifier.high_classifier.out_channels == 3
    assert not any(m.training for m in loaded.model.modules())
    assert loaded.preprocess == Preprocess.imagenet()
    assert loaded.preprocess.mean == IMAGENET_MEAN and loaded.class_names is None
    assert loaded.family is None  # no zoo family of that name
    assert "random weights" in loaded.source


def test_torchvision_weights_and_class_inference(tv, tmp_path):
    torch.manual_seed(0)
    original = tv.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).eval()
    file = tmp_path / "lraspp.pth"
    torch.save(original.state_dict(), file)
    loaded = load_model("torchvision:lraspp-mobilenet-v3-large", weights=file)  # 5 from the file
    same_state(loaded.model, original)
    assert not any(m.training for m in loaded.model.modules())
    assert "5 classes" in loaded.source


def test_torchvision_checkpoint_with_aux_head(tv, tmp_path):
    torch.manual_seed(0)
    original = tv.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=True).eval()
    file = tmp_path / "deeplab_voc.pth"
    torch.save(original.state_dict(), file)  # 21 classes + aux_classifier, like torchvision's own
    loaded = load_model("torchvision:deeplabv3_mobilenet_v3_large", weights=file)
    same_state(loaded.model, original, skip="aux_classifier.")
    assert loaded.model.aux_classifier is None and not loaded.model.training
    assert loaded.family == "deeplabv3-mobilenet"
    assert loaded.class_names[0] == "background" and "person" in loaded.class_names
    assert len(loaded.class_names) == 21


def test_torchvision_unknown(tv):
    with pytest.raises(ModelLoadError, match="Did you mean deeplabv3_resnet50"):
        load_model("torchvision:deeplabv3_resnet5")


# ------------------------------------------------------------------ Hugging Face
@pytest.fixture(scope="module")
def segformer():
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        num_attention_heads=[1, 1], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
        decoder_hidden_size=16, num_labels=3,
        id2label={0: "sky", 1: "road", 2: "car"}, label2id={"sky": 0, "road": 1, "car": 2},
    )
    torch.manual_seed(0)
    return transformers.SegformerForSemanticSegmentation(config).eval()


def test_hugging_face_folder(segformer, tmp_path):
    segformer.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "SegformerImageProcessor", "do_resize": True, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.4, 0.3],
        "image_std": [0.2, 0.25, 0.3], "size": {"height": 64, "width": 48},
    }))
    loaded = load_model(tmp_path)
    x = torch.rand(1, 3, 32, 32)
    check(loaded, segformer, x=x)
    assert loaded.class_names == ["sky", "road", "car"]
    assert loaded.preprocess == Preprocess((64, 48), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), 3)
    assert "SegformerForSemanticSegmentation" in loaded.source
    assert load_model(tmp_path / "config.json").class_names == ["sky", "road", "car"]
    load_model(tmp_path, num_classes=3)
    with pytest.raises(ModelLoadError, match="fixes its own classes"):
        load_model(tmp_path, num_classes=4)


def test_hugging_face_folder_defaults(segformer, tmp_path):
    segformer.config.id2label = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    try:
        segformer.save_pretrained(tmp_path)
    finally:
        segformer.config.id2label = {0: "sky", 1: "road", 2: "car"}
    loaded = load_model(tmp_path)
    assert loaded.preprocess == Preprocess.imagenet() and loaded.class_names is None


def test_hugging_face_remote_code_refused(segformer, tmp_path):
    segformer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSemanticSegmentation": "modeling_evil.EvilModel"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        load_model(tmp_path)


def test_preprocess_override():
    pre = Preprocess(size=(32, 32), mean=IMAGENET_MEAN, std=IMAGENET_STD, channels=3)
    assert load_model("default", preprocess=pre).preprocess is pre
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_model("zoo:unet", preprocess=pre).preprocess is pre


def test_hugging_face_pickled_weights_refused(segformer, tmp_path):
    segformer.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    state = dict(segformer.state_dict(), extra=Evil(marker))
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsafePickleError, match="pytorch_model.bin.*allow_pickle=True"):
        load_model(tmp_path)
    assert not marker.exists()
    torch.save(segformer.state_dict(), tmp_path / "pytorch_model.bin")  # plain tensors: fine
    check(load_model(tmp_path), segformer, x=torch.rand(1, 3, 32, 32))
