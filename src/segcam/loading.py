"""Bring your own model: one spec string → a model in eval mode, its preprocessing and class names.

:func:`load_model` reads ``spec`` in this order (the first form that fits wins):

``default``
    segcam's bundled U-Net (:func:`segcam.models.default`), trained on :mod:`segcam.data`.
``zoo:NAME`` or plain ``NAME``
    a :mod:`segcam.zoo` family (``unet``, ``vgg-unet``, ``deeplabv3-resnet50`` …) built offline
    with ``num_classes`` classes (default 6, the synthetic data's), random weights unless
    ``weights`` is given.  A plain name that is also an existing file or folder is refused
    as ambiguous: write ``zoo:NAME`` or ``./NAME``.
``torchvision:NAME``
    a torchvision segmentation builder (``deeplabv3_resnet50``, ``fcn_resnet50``,
    ``lraspp_mobilenet_v3_large`` …) with ``weights=None, weights_backbone=None`` (nothing
    is downloaded) and ``num_classes`` (default torchvision's 21), plus an optional ``weights``
    file; ImageNet preprocessing.
``package.module:function``
    a Python factory (any callable, ``Class`` or ``obj.attr`` path) returning an
    ``nn.Module``; imported with :mod:`importlib` and called with ``num_classes=`` only if
    ``num_classes`` is given, plus an optional ``weights`` file.  If the module is not
    importable but sits in the current folder, the current folder is appended to ``sys.path``.
``PATH`` (an existing file or folder; the kind is read from the content, not the suffix)
    * a folder with ``config.json``: a local Hugging Face model
      (``AutoModelForSemanticSegmentation.from_pretrained(PATH, local_files_only=True)``),
      class names from ``config.id2label``, preprocessing from ``preprocessor_config.json``;
    * a TorchScript archive (``torch.jit.save``) → ``torch.jit.load``;
    * an exported program (``torch.export.save``, ``.pt2``) → ``torch.export.load``, unflattened
      so that its submodules keep their names and can be hooked;
    * a ``.safetensors`` file written by segcam (:func:`segcam.models.save_weights`, e.g. by
      ``segcam train``): the architecture named in its metadata with its weights;
    * a pickled model (``torch.save(model)``), only with ``allow_pickle=True``.

    A file holding only weights (a state dict) cannot name its architecture: pass it as
    ``weights`` next to a ``zoo:``, ``torchvision:`` or factory spec.

Weights files (``weights=``) are ``.safetensors`` or ``torch.save`` files of a state dict,
possibly wrapped in a checkpoint dict under ``"state_dict"``, ``"model_state_dict"`` or
``"model"``; a prefix added by ``DataParallel`` (``module.``), ``torch.compile``
(``_orig_mod.``) or Lightning (``model.``) is removed when that makes the keys fit, and
torchvision's training-only ``aux_classifier.*`` is dropped when the model has none.  When
``num_classes`` is not given for a zoo or torchvision model it is read from the weights.

Safety: pickles can run arbitrary code when loaded, so every ``torch.load`` uses
``weights_only=True`` and an exported program's pickled members are checked the same way
before ``torch.export.load`` (which would otherwise unpickle them without restriction).  A
file that needs more raises :class:`UnsafePickleError`; ``allow_pickle=True`` (CLI:
``--allow-pickle``) loads it, and should be used only for files you trust.  TorchScript and
Hugging Face folders are read by their own restricted loaders (Hugging Face's own
``weights_only`` check included); Hugging Face ``trust_remote_code`` is never used.

>>> loaded = load_model("default")                                              # doctest: +SKIP
>>> loaded = load_model("mypkg.nets:build", weights="run3.pt", num_classes=4)    # doctest: +SKIP
>>> loaded = load_model("torchvision:deeplabv3_resnet50", weights="voc.pth")     # doctest: +SKIP
>>> Explainer(loaded.model).explain(loaded.preprocess(image), Target(2))          # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ModelLoadError, SegcamError, SegcamWarning, UnsafePickleError, closest
from .preprocess import Preprocess

__all__ = ["FORMS", "LoadedModel", "ModelLoadError", "UnsafePickleError", "load_model"]


@dataclass
class LoadedModel:
    """What :func:`load_model` returns."""

    model: nn.Module  # in eval mode
    preprocess: Preprocess  # the source's usual preprocessing, or the one passed in
    class_names: list[str] | None
    source: str  # where it came from, for people
    family: str | None  # the segcam.zoo family, when known (for readable layer names)


FORMS = """accepted model specs:
  default                   segcam's bundled U-Net
  zoo:NAME or NAME          a segcam.zoo family ({zoo}) [+ weights file]
  torchvision:NAME          a torchvision segmentation model ({tv}) [+ weights file]
  package.module:function   a Python factory returning an nn.Module [+ weights file]
  PATH                      a TorchScript file, a torch.export .pt2 file, a segcam .safetensors
                            file, a Hugging Face model folder (config.json), or a pickled model
                            (only with allow_pickle=True / --allow-pickle)"""

_FACTORY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_PATH_SUFFIXES = {".pt", ".pth", ".pt2", ".safetensors", ".ts", ".jit", ".bin", ".ckpt", ".pkl",
                  ".pickle", ".zip", ".json"}
_WRAPPERS = ("state_dict", "model_state_dict", "model")  # checkpoint keys holding the state dict
_PREFIXES = ("module.", "_orig_mod.", "model.")  # DataParallel, torch.compile, Lightning
_TORCHVISION_FAMILIES = {  # torchvision builder → segcam.zoo family of exactly that model
    "deeplabv3_resnet50": "deeplabv3-resnet50",
    "deeplabv3_mobilenet_v3_large": "deeplabv3-mobilenet",
    "fcn_resnet50": "fcn-resnet50",
}
_TRUST = (
    "If you trust this file (you made it, or it comes from someone you trust), load it with "
    "allow_pickle=True (CLI: --allow-pickle)."
)
_PICKLE_FIX = (
    f"{_TRUST} Safer: save only the weights (torch.save(model.state_dict(), path) or a "
    ".safetensors file) and pass them as weights with an architecture spec."
)


# ------------------------------------------------------------------ entry point
def load_model(
    spec: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    preprocess: Preprocess | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load the model named by ``spec`` (see the module docstring for the forms), in eval mode.

    ``weights``: a state-dict file for ``zoo:``, ``torchvision:`` and factory specs.
    ``num_classes``: output classes for those specs.  ``preprocess`` replaces the source's
    default preprocessing.  ``allow_pickle`` lets trusted files run pickle code.
    """
    text = os.fspath(spec).strip() if isinstance(spec, os.PathLike) else str(spec).strip()
    if not text:
        raise ModelLoadError(f"the model spec is empty.\n{_forms()}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise ModelLoadError(f"num_classes must be a positive integer, got {num_classes!r}.")
    weights_path = _existing(weights, "weights file") if weights is not None else None
    loaded = _dispatch(text, weights_path, num_classes, allow_pickle)
    _to_eval(loaded.model)
    if preprocess is not None:
        loaded.preprocess = preprocess
    return loaded


def _dispatch(spec: str, weights: Path | None, num_classes: int | None, allow_pickle: bool) -> LoadedModel:
    if spec == "default":
        return _load_default(weights, num_classes)
    lower = spec.lower()
    if lower.startswith("zoo:"):
        return _load_zoo(spec[4:].strip(), weights, num_classes, allow_pickle)
    if lower.startswith("torchvision:"):
        return _load_torchvision(spec[len("torchvision:"):].strip(), weights, num_classes, allow_pickle)
    path = Path(spec).expanduser()
    family = _zoo_name(spec)
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long, or with a NUL: not a path
        exists = False
    if exists:
        if family is not None:
            raise ModelLoadError(
                f"{spec!r} is both a zoo model family and a file or folder here; write "
                f"'zoo:{family}' for the family or './{spec}' for the path."
            )
        return _load_path(path, weights, num_classes, allow_pickle)
    if family is not None:
        return _load_zoo(family, weights, num_classes, allow_pickle)
    if _FACTORY.fullmatch(spec):
        return _load_factory(spec, weights, num_classes, allow_pickle)
    if _looks_like_path(spec):
        hint = ""
        if _HUB_ID.fullmatch(spec) and not Path(spec).suffix:
            hint = (f" If {spec!r} is a Hugging Face Hub id: segcam never downloads; fetch it first "
                    f"(e.g. `hf download {spec} --local-dir DIR`) and pass DIR.")
        raise ModelLoadError(f"model file not found: {_show(path)}.{hint} Check the path.\n{_forms()}")
    near = closest(spec, _known_names())
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    raise ModelLoadError(f"unknown model spec {spec!r}.{hint}\n{_forms()}")


# ------------------------------------------------------------------ default and zoo
def _load_default(weights: Path | None, num_classes: int | None) -> LoadedModel:
    from . import models

    if weights is not None:
        raise ModelLoadError(
            "the default model comes with its own weights; to load other weights into its "
            "architecture use the spec 'zoo:unet' with them."
        )
    model, info = models.default(), models.default_info()
    names = list(info.get("class_names") or []) or None
    if num_classes is not None and num_classes != info["arch"]["num_classes"]:
        raise ModelLoadError(
            f"the default model has {info['arch']['num_classes']} classes, not {num_classes}; for "
            f"an untrained U-Net with {num_classes} classes use the spec 'zoo:unet'."
        )
    pre = Preprocess(channels=info["arch"].get("in_channels", 3))
    return LoadedModel(model, pre, names, f"segcam's default model ({models.WEIGHTS.name})", "unet")


def _zoo_name(spec: str) -> str | None:
    from . import zoo

    for name in (spec, spec.lower()):
        if name in zoo.FAMILIES:
            return name
    return None


def _load_zoo(name: str, weights: Path | None, num_classes: int | None, allow_pickle: bool) -> LoadedModel:
    from . import zoo
    from .data import CLASS_NAMES

    fam = zoo.family(_zoo_name(name) or name)  # clear error for unknown / uninstalled families
    state, meta = _read_weights(weights, allow_pickle) if weights is not None else (None, {})
    default = 6
    n = num_classes or _meta_classes(meta) or default
    model = zoo.build(fam.name, n)
    if state is not None:
        state = _fit_keys(state, model)
        if num_classes is None and not _meta_classes(meta):
            inferred = _infer_num_classes(model, state, n)
            if inferred != n:
                n, model = inferred, zoo.build(fam.name, inferred)
        _load_state(model, state, weights, f"the zoo model {fam.name!r} with {n} classes")
    names = meta.get("class_names")
    if names is None and state is None and n == len(CLASS_NAMES):
        names = list(CLASS_NAMES)
    how = f"weights from {_show(weights)}" if weights is not None else "random weights"
    return LoadedModel(model, fam.preprocess, _names(names), f"zoo:{fam.name} ({n} classes, {how})",
                       fam.name)


# ------------------------------------------------------------------ torchvision
def _load_torchvision(name: str, weights: Path | None, num_classes: int | None,
                      allow_pickle: bool) -> LoadedModel:
    try:
        import torchvision.models as tvm
        from torchvision.models import segmentation
    except ImportError:
        raise ModelLoadError(
            f"the spec 'torchvision:{name}' needs torchvision; install it with pip install torchvision."
        ) from None
    from . import zoo

    builders = tvm.list_models(module=segmentation)
    key = name.replace("-", "_").lower()
    if key not in builders:
        near = closest(key, builders)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise ModelLoadError(
            f"unknown torchvision segmentation model {name!r}.{hint} Known: {', '.join(builders)}."
        )
    builder = tvm.get_model_builder(key)

    def build(n: int | None) -> nn.Module:
        return builder(weights=None, weights_backbone=None, num_classes=n)

    state, meta = _read_weights(weights, allow_pickle) if weights is not None else (None, {})
    n = num_classes or _meta_classes(meta)
    model = build(n)
    resolved = n or _out_channels(model)
    if state is not None:
        state = _fit_keys(state, model)
        if n is None:
            inferred = _infer_num_classes(model, state, resolved)
            if inferred != resolved:
                resolved, model = inferred, build(inferred)
        _load_state(model, state, weights, f"torchvision's {key} with {resolved} classes")
    names = meta.get("class_names")
    if names is None and state is not None:  # torchvision's own checkpoints: VOC categories
        categories = _torchvision_categories(tvm, key)
        if categories and len(categories) == resolved:
            names = [c.strip("_") for c in categories]
    family = _TORCHVISION_FAMILIES.get(key, key.replace("_", "-"))
    family = family if family in zoo.FAMILIES and _family_fits(family, model) else None
    how = f"weights from {_show(weights)}" if weights is not None else "random weights"
    return LoadedModel(model, Preprocess.imagenet(), _names(names),
                       f"torchvision:{key} ({resolved} classes, {how})", family)


def _torchvision_categories(tvm: Any, key: str) -> list[str] | None:
    try:
        enum = tvm.get_model_weights(key)
        return list(next(iter(enum)).meta["categories"])
    except (AttributeError, KeyError, StopIteration, TypeError, ValueError):  # metadata only
        return None


def _out_channels(model: nn.Module) -> int | None:
    """torchvision's default class count, read from the last classifier conv."""
    convs = [m for m in model.classifier.modules() if isinstance(m, nn.Conv2d)] if hasattr(
        model, "classifier") else []
    return convs[-1].out_channels if convs else None


# ------------------------------------------------------------------ factories
def _load_factory(spec: str, weights: Path | None, num_classes: int | None,
                  allow_pickle: bool) -> LoadedModel:
    module_name, attr = spec.split(":", 1)
    target: Any = _import(module_name, spec)
    for i, part in enumerate(attr.split(".")):
        if not hasattr(target, part):
            where = module_name if i == 0 else f"{module_name}:{'.'.join(attr.split('.')[:i])}"
            public = [n for n in dir(target) if not n.startswith("_")]
            near = closest(part, public)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise ModelLoadError(
                f"the model factory {spec!r}: {where} has no attribute {part!r}.{hint} "
                "Write package.module:function with a function that returns an nn.Module."
            )
        target = getattr(target, part)
    if not callable(target):
        raise ModelLoadError(
            f"the model factory {spec!r} is a {type(target).__name__}, not something callable; "
            "name a function or class that returns an nn.Module."
        )
    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    if kwargs and not _accepts(target, "num_classes"):
        raise ModelLoadError(
            f"the model factory {spec!r} takes no num_classes argument; leave num_classes out "
            "(CLI: --num-classes) or add the parameter to the factory."
        )
    call = f"{spec}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        model = target(**kwargs)
    except SegcamError:
        raise
    except Exception as e:
        raise ModelLoadError(f"calling the model factory {call} failed: {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"the model factory {call} returned a {type(model).__name__}, not a torch nn.Module; "
            "make it return the model."
        )
    if weights is not None:
        state, _ = _read_weights(weights, allow_pickle)
        _load_state(model, _fit_keys(state, model), weights, f"the model from {call}")
        names = _read_weights_meta(weights).get("class_names")
    else:
        names = None
    family = _segcam_family(model)
    pre = _family_preprocess(family) if family else Preprocess()
    how = f"weights from {_show(weights)}" if weights is not None else "the factory's own weights"
    return LoadedModel(model, pre, _names(names), f"{call} ({how})", family)


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            top = module_name.split(".")[0]
            cwd = Path.cwd()
            local = (cwd / f"{top}.py").is_file() or (cwd / top).is_dir()
            if local and not _on_path(cwd):
                sys.path.append(str(cwd))
                importlib.invalidate_caches()
                return _import(module_name, spec)
            raise ModelLoadError(
                f"cannot import {module_name!r} for the model factory {spec!r}: no module named "
                f"{missing!r}. Check the spelling, install the package, or put the folder that "
                "holds it on PYTHONPATH."
            ) from None
        raise ModelLoadError(
            f"importing {module_name!r} for the model factory {spec!r} failed: it imports "
            f"{missing!r}, which is not installed; install it (pip install ...) and retry."
        ) from e
    except SegcamError:
        raise
    except Exception as e:
        raise ModelLoadError(
            f"importing {module_name!r} for the model factory {spec!r} raised "
            f"{type(e).__name__}: {e}; fix the module so that it imports cleanly."
        ) from e


def _on_path(folder: Path) -> bool:
    for entry in sys.path:
        try:
            if Path(entry or ".").resolve() == folder.resolve():
                return True
        except OSError:
            continue
    return False


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _segcam_family(model: nn.Module) -> str | None:
    """The zoo family of segcam's own model classes (exact class only)."""
    from . import models, zoo

    family = {models.UNet: "unet", getattr(models, "VGGUNet", None): "vgg-unet"}.get(type(model))
    return family if family in zoo.FAMILIES else None


def _family_preprocess(family: str) -> Preprocess:
    from . import zoo

    return zoo.FAMILIES[family].preprocess


def _family_fits(family: str, model: nn.Module) -> bool:
    """Whether the zoo family's readable layer names all exist in ``model``."""
    from . import zoo

    try:
        names = zoo.FAMILIES[family].layers(model)
    except Exception:  # noqa: BLE001 - any failure means the family's names do not fit
        return False
    modules = dict(model.named_modules())
    return all(target in modules for target in names.values())


# ------------------------------------------------------------------ paths
def _load_path(path: Path, weights: Path | None, num_classes: int | None,
               allow_pickle: bool) -> LoadedModel:
    if path.is_dir() or path.name == "config.json":
        folder = path if path.is_dir() else path.parent
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"{_show(folder)} is a folder without config.json, so not a Hugging Face model "
                "folder (save_pretrained writes config.json and the weights); pass a model file "
                f"or such a folder.\n{_forms()}"
            )
        _no_weights(weights, "a Hugging Face folder")
        return _load_hf(folder, num_classes, allow_pickle)
    kind = _sniff(path)
    if kind == "safetensors":
        return _load_segcam_safetensors(path, weights, num_classes)
    if kind == "zip":
        names = _zip_names(path)
        if _is_torchscript(names):
            _no_weights(weights, "a TorchScript file")
            _no_classes(num_classes, "a TorchScript file")
            return _load_torchscript(path)
        if _is_pt2(names):
            _no_weights(weights, "an exported program")
            _no_classes(num_classes, "an exported program")
            return _load_exported(path, allow_pickle)
    elif path.suffix == ".pt2":
        raise ModelLoadError(f"{_show(path)} is not an exported program (not a .pt2 zip archive); "
                             "write it with torch.export.save(torch.export.export(model, args), path).")
    obj = _torch_load(path, allow_pickle)
    model = obj
    if isinstance(obj, Mapping) and not isinstance(obj, nn.Module):
        model = next((obj[k] for k in ("model", "module", "net") if isinstance(obj.get(k), nn.Module)), obj)
    if not isinstance(model, nn.Module):
        if _state_dict_of(obj) is not None:
            raise ModelLoadError(
                f"{_show(path)} holds only weights (a state dict), which do not say which "
                "architecture they belong to. Pass them as weights with an architecture spec: "
                f"load_model('zoo:NAME' | 'torchvision:NAME' | 'package.module:function', "
                f"weights={str(path)!r}) (CLI: --model SPEC --weights {path})."
            )
        raise ModelLoadError(
            f"{_show(path)} holds a {type(obj).__name__}, not a model or weights; save the model "
            f"with torch.jit.save, torch.export.save or save_pretrained, or its state_dict.\n{_forms()}"
        )
    _no_weights(weights, "a pickled model")
    _no_classes(num_classes, "a pickled model")
    family = _segcam_family(model)
    pre = _family_preprocess(family) if family else Preprocess()
    return LoadedModel(model, pre, None, f"pickled model {_show(path)} (loaded with allow_pickle)", family)


def _no_weights(weights: Path | None, what: str) -> None:
    if weights is not None:
        raise ModelLoadError(
            f"weights ({_show(weights)}) apply only to zoo:, torchvision: and factory specs; "
            f"{what} carries its own weights. Leave weights out."
        )


def _no_classes(num_classes: int | None, what: str, actual: int | None = None) -> None:
    if num_classes is not None and num_classes != actual:
        raise ModelLoadError(
            f"num_classes={num_classes} applies only to zoo:, torchvision: and factory specs; "
            f"{what} fixes its own classes{f' ({actual})' if actual else ''}. Leave num_classes out."
        )


def _sniff(path: Path) -> str:
    """``'zip'``, ``'safetensors'``, ``'pickle'`` or ``'unknown'`` from a file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) == 9 and head[8:9] == b"{":
        size = int.from_bytes(head[:8], "little")
        if 0 < size <= path.stat().st_size - 8:
            return "safetensors"
    if path.suffix == ".safetensors":
        return "safetensors"  # let safetensors itself say what is wrong
    return "pickle" if head[:1] == b"\x80" else "unknown"


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except zipfile.BadZipFile as e:
        raise ModelLoadError(f"{_show(path)} looks like a zip archive but cannot be read ({e}); "
                             "the file may be truncated: save it again.") from e


def _is_torchscript(names: list[str]) -> bool:
    return any("/code/__torch__/" in n or n.endswith("/constants.pkl") for n in names)


def _is_pt2(names: list[str]) -> bool:
    return any(n.endswith("/archive_format") or "/models/" in n and n.endswith(".json") for n in names)


def _load_torchscript(path: Path) -> LoadedModel:
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ModelLoadError(f"cannot load the TorchScript file {_show(path)}: {e}") from e
    warnings.warn(
        f"{_show(path)} is TorchScript: PyTorch runs no Python forward hooks on TorchScript "
        "modules, so segcam can predict with it but cannot read its layers to explain it. "
        "Export it with torch.export.save (.pt2) or load its weights into the Python model "
        "(spec package.module:function with weights) to explain it.",
        SegcamWarning, stacklevel=5,
    )
    return LoadedModel(model, Preprocess(), None, f"TorchScript file {_show(path)}", None)


def _load_exported(path: Path, allow_pickle: bool) -> LoadedModel:
    data = path.read_bytes()  # vetted and loaded from the same bytes
    if not allow_pickle:
        _vet_pt2(data, path)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as e:
        raise ModelLoadError(f"cannot load the exported program {_show(path)}: {type(e).__name__}: {e}") from e
    try:  # keeps the module hierarchy, so layers can be hooked and named
        model: nn.Module = torch.export.unflatten(program)
    except Exception as e:  # noqa: BLE001 - fall back to the flat module, with a warning
        model = program.module()
        warnings.warn(
            f"{_show(path)} could not be unflattened ({type(e).__name__}: {e}); its layers run "
            "as one flat graph, so segcam cannot hook them to explain the model.",
            SegcamWarning, stacklevel=5,
        )
    return LoadedModel(model, _exported_preprocess(program), None, f"exported program {_show(path)}", None)


def _exported_preprocess(program: Any) -> Preprocess:
    """The exported input's static size and channels (exports are shape-specialised)."""
    try:
        user = set(program.graph_signature.user_inputs)
        vals = [n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder" and n.name in user]
    except (AttributeError, KeyError, TypeError):
        return Preprocess()
    if len(vals) != 1 or not isinstance(vals[0], Tensor) or vals[0].ndim < 3:
        return Preprocess()
    shape = list(vals[0].shape)
    spatial = shape[2:]
    size = tuple(int(s) for s in spatial) if all(type(s) is int for s in spatial) else None
    channels = int(shape[1]) if type(shape[1]) is int else None
    return Preprocess(size=size, channels=channels)


def _vet_pt2(data: bytes, path: Path) -> None:
    """Refuse a .pt2 archive whose members torch.export.load would unpickle without restriction."""
    risky: list[str] = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {name.split("/", 1)[1] if "/" in name else name: name for name in zf.namelist()}
        raw: set[str] = set()
        for rel, name in members.items():
            folder = next((d for d in ("data/weights/", "data/constants/") if rel.startswith(d)), None)
            if folder is None or not rel.endswith("_config.json"):
                continue
            try:
                config = json.loads(zf.read(name)).get("config", {})
            except (ValueError, AttributeError):
                continue
            for fqn, entry in config.items():
                file = entry.get("path_name", "") if isinstance(entry, dict) else ""
                if file.startswith(("custom_obj_", "opaque_obj_")):
                    risky.append(f"{fqn} (a pickled object)")
                    raw.add(folder + file)  # already counted
                elif not entry.get("use_pickle", False):
                    raw.add(folder + file)  # raw tensor bytes, never unpickled
        for rel, name in members.items():
            if (not rel.startswith(("data/weights/", "data/constants/", "data/sample_inputs/"))
                    or rel.endswith(".json") or rel in raw):
                continue
            try:
                torch.load(io.BytesIO(zf.read(name)), map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e:
                found = _pickled_global(e)
                risky.append(f"{rel}{f' (asks for {found})' if found else ''}")
            except Exception as e:  # noqa: BLE001 - whatever the safe loader cannot read is risky
                risky.append(f"{rel} (unreadable by the safe loader: {type(e).__name__})")
    if risky:
        raise UnsafePickleError(
            f"{_show(path)} is an exported program whose archive holds pickled Python objects "
            f"({', '.join(risky[:3])}{' …' if len(risky) > 3 else ''}), which torch.export.load "
            f"unpickles without restriction: that could run arbitrary code. {_PICKLE_FIX}"
        )


# ------------------------------------------------------------------ segcam safetensors
def _load_segcam_safetensors(path: Path, weights: Path | None, num_classes: int | None) -> LoadedModel:
    from . import models

    meta = _read_weights_meta(path)
    if not meta:
        raise ModelLoadError(
            f"{_show(path)} holds only weights (safetensors without segcam's metadata), which do "
            "not say which architecture they belong to. Pass them as weights with an "
            "architecture spec: load_model('zoo:NAME' | 'torchvision:NAME' | "
            f"'package.module:function', weights={str(path)!r}) (CLI: --model SPEC --weights {path})."
        )
    _no_weights(weights, "a segcam weights file")
    _no_classes(num_classes, "a segcam weights file", _meta_classes(meta))
    try:
        model, meta = models.load_weights(path)
    except SegcamError:
        raise
    except Exception as e:
        raise ModelLoadError(f"cannot load the segcam weights file {_show(path)}: {type(e).__name__}: {e}") from e
    family = meta.get("family") or _segcam_family(model)
    if "arch" in meta:
        pre = Preprocess(channels=meta["arch"].get("in_channels", 3))
    else:
        pre = _family_preprocess(family) if family else Preprocess()
    return LoadedModel(model, pre, _names(meta.get("class_names")), f"segcam weights file {_show(path)}", family)


# ------------------------------------------------------------------ Hugging Face
def _load_hf(folder: Path, num_classes: int | None, allow_pickle: bool) -> LoadedModel:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {_show(folder / 'config.json')}: {e}") from e
    if not isinstance(config, dict):
        raise ModelLoadError(f"{_show(folder / 'config.json')} is not a JSON object; save the model "
                             "with save_pretrained.")
    if config.get("auto_map"):
        raise ModelLoadError(
            f"the Hugging Face model in {_show(folder)} needs its own Python code "
            "(trust_remote_code), which segcam never runs; build it yourself and pass a factory "
            "spec package.module:function that returns it."
        )
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ModelLoadError(
            f"{_show(folder)} is a Hugging Face model folder; loading it needs transformers: "
            "pip install transformers."
        ) from None
    version = tuple(int(v) for v in re.findall(r"\d+", transformers.__version__)[:2])
    kwargs: dict[str, Any] = {"local_files_only": True, "output_loading_info": True,
                              "dtype" if version >= (4, 56) else "torch_dtype": torch.float32}
    if allow_pickle and "weights_only" in inspect.signature(
            transformers.PreTrainedModel.from_pretrained).parameters:
        kwargs["weights_only"] = False
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        try:
            model, info = transformers.AutoModelForSemanticSegmentation.from_pretrained(str(folder), **kwargs)
        except ValueError as e:
            if "Unrecognized configuration class" not in str(e):
                raise
            archs = [a for a in config.get("architectures") or [] if hasattr(transformers, a)]
            if not archs:
                raise ModelLoadError(
                    f"the Hugging Face model in {_show(folder)} (model_type "
                    f"{config.get('model_type')!r}) is not a semantic-segmentation model "
                    "transformers knows, and config.json names no architecture class to use; "
                    "load it yourself and pass a factory spec package.module:function."
                ) from None
            model, info = getattr(transformers, archs[0]).from_pretrained(str(folder), **kwargs)
    except SegcamError:
        raise
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(
            f"the Hugging Face folder {_show(folder)} stores its weights as a pickle "
            f"(pytorch_model.bin) that holds Python objects; unpickling them could run code. "
            f"{_TRUST} Safer: save the model with save_pretrained, which writes model.safetensors."
        ) from e
    except Exception as e:
        raise ModelLoadError(
            f"cannot load the Hugging Face model in {_show(folder)}: {type(e).__name__}: {e}"
        ) from e
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    params = dict(model.named_parameters())
    missing = [k for k in info.get("missing_keys", []) if k in params]
    if missing:
        raise ModelLoadError(
            f"the weights in {_show(folder)} do not cover the model: {len(missing)} parameters "
            f"would be random ({_few(missing)}). Were they saved from another architecture (e.g. "
            "a backbone without its segmentation head)? Save the full model with save_pretrained."
        )
    n = getattr(model.config, "num_labels", None)
    _no_classes(num_classes, "a Hugging Face model", n)
    names = _hf_labels(getattr(model.config, "id2label", None))
    channels = getattr(model.config, "num_channels", None) or 3
    pre = _hf_preprocess(folder, channels)
    model_type = getattr(model.config, "model_type", None)
    from . import zoo

    family = model_type if model_type in zoo.FAMILIES and _family_fits(model_type, model) else None
    return LoadedModel(model, pre, names, f"Hugging Face {type(model).__name__} from {_show(folder)}", family)


def _hf_labels(id2label: Any) -> list[str] | None:
    if not isinstance(id2label, Mapping) or not id2label:
        return None
    try:
        items = sorted((int(k), str(v)) for k, v in id2label.items())
    except (TypeError, ValueError):
        return None
    if [i for i, _ in items] != list(range(len(items))):
        return None
    names = [v for _, v in items]
    if all(re.fullmatch(r"LABEL_\d+", v) for v in names):  # transformers' placeholders
        return None
    return names


def _hf_preprocess(folder: Path, channels: int) -> Preprocess:
    """Resize and normalisation from preprocessor_config.json; ImageNet's without one.

    segcam's images are already in [0, 1], so the processor's rescale (1/255) is not applied.
    A ``shortest_edge`` size (aspect-preserving) cannot be expressed and leaves the size alone.
    """
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return Preprocess.imagenet()
    try:
        cfg = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {_show(file)}: {e}; fix or delete it.") from e

    def per_channel(value: Any) -> tuple[float, ...] | None:
        if value is None:
            return None
        values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        return tuple(values * channels) if len(values) == 1 else tuple(values)

    mean = std = None
    if cfg.get("do_normalize", True):
        mean, std = per_channel(cfg.get("image_mean")), per_channel(cfg.get("image_std"))
    size = None
    raw = cfg.get("size")
    if cfg.get("do_resize", True) and raw is not None:
        if isinstance(raw, int):
            size = (raw, raw)
        elif isinstance(raw, Mapping) and "height" in raw and "width" in raw:
            size = (int(raw["height"]), int(raw["width"]))
        elif isinstance(raw, (list, tuple)) and len(raw) == 2:
            size = (int(raw[0]), int(raw[1]))
    return Preprocess(size=size, mean=mean, std=std, channels=channels)


# ------------------------------------------------------------------ weights files
def _read_weights(path: Path, allow_pickle: bool) -> tuple[dict[str, Tensor], dict]:
    """The state dict in a weights file and segcam's metadata (``{}`` when none)."""
    if path.is_dir():
        raise ModelLoadError(
            f"the weights {_show(path)} are a folder, not a file; a Hugging Face model folder is "
            "passed as the model spec itself."
        )
    kind = _sniff(path)
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:
            raise ModelLoadError(f"{_show(path)} is not a readable .safetensors file ({e}); "
                                 "save it again with safetensors.torch.save_file.") from e
        return state, _read_weights_meta(path)
    if kind == "zip":
        names = _zip_names(path)
        if _is_torchscript(names) or _is_pt2(names):
            what = "a TorchScript model" if _is_torchscript(names) else "an exported program"
            raise ModelLoadError(
                f"{_show(path)} is {what}, which carries its own architecture: pass it as the "
                "model spec, not as weights."
            )
    obj = _torch_load(path, allow_pickle)
    state = _state_dict_of(obj)
    if state is None:
        keys = f" with keys {_few([str(k) for k in obj])}" if isinstance(obj, Mapping) else ""
        raise ModelLoadError(
            f"{_show(path)} holds a {type(obj).__name__}{keys}, not a state dict (parameter names "
            f"→ tensors), nor one wrapped under {', '.join(repr(w) for w in _WRAPPERS)}; save "
            "model.state_dict()."
        )
    return state, {}


def _read_weights_meta(path: Path) -> dict:
    if _sniff(path) != "safetensors":
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta["segcam"]) if "segcam" in meta else {}
    except Exception:  # noqa: BLE001 - unreadable metadata is no metadata; the weights load reports
        return {}


def _meta_classes(meta: Mapping) -> int | None:
    n = meta.get("num_classes") or (meta.get("arch") or {}).get("num_classes")
    return int(n) if n else None


def _torch_load(path: Path, allow_pickle: bool) -> Any:
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": noise for plain pickles
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not allow_pickle:
            found = _pickled_global(e)
            asks = f" (it asks for {found})" if found else ""
            raise UnsafePickleError(
                f"{_show(path)} holds pickled Python objects{asks}, not just tensors; unpickling "
                f"them could run arbitrary code, so segcam refuses by default. {_PICKLE_FIX}"
            ) from None
    except Exception as e:
        raise ModelLoadError(
            f"{_show(path)} is not a file PyTorch can read ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'unreadable'}); pass a torch.save, "
            ".safetensors, TorchScript or .pt2 file, or a Hugging Face folder."
        ) from e
    try:  # the user trusts this file
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ModelLoadError(f"cannot unpickle {_show(path)}: {type(e).__name__}: {e} (the classes it "
                             "names must be importable).") from e


def _pickled_global(error: Exception) -> str | None:
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else None


def _state_dict_of(obj: Any, depth: int = 0) -> dict[str, Tensor] | None:
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if not isinstance(obj, Mapping) or not obj:
        return None
    if depth < 2:
        for key in _WRAPPERS:
            if key in obj:
                inner = _state_dict_of(obj[key], depth + 1)
                if inner is not None:
                    return inner
    if not all(isinstance(k, str) for k in obj):
        return None
    odd = [k for k, v in obj.items() if not isinstance(v, Tensor) and not k.endswith("_extra_state")]
    return dict(obj) if not odd and any(isinstance(v, Tensor) for v in obj.values()) else None


def _fit_keys(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Remove a wrapper's key prefix and torchvision's aux head when that makes the keys fit."""
    own = set(model.state_dict())
    if not any(k.startswith("aux_classifier.") for k in own):
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    if set(state) == own:
        return state
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) == own:
                return stripped
    return state


def _infer_num_classes(model: nn.Module, state: Mapping[str, Tensor], current: int | None) -> int | None:
    """The class count of ``state`` when it differs from ``model``'s only in the class dim."""
    if current is None:
        return current
    found = set()
    for key, own in model.state_dict().items():
        theirs = state.get(key)
        if not isinstance(theirs, Tensor) or theirs.shape == own.shape:
            continue
        if own.ndim == 0 or own.shape[0] != current or theirs.shape[1:] != own.shape[1:]:
            return current  # another kind of mismatch: let the load report it
        found.add(int(theirs.shape[0]))
    return found.pop() if len(found) == 1 else current


def _load_state(model: nn.Module, state: Mapping[str, Any], path: Path, what: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own
              if k in state and isinstance(state[k], Tensor) and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys the model needs are missing from the file ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} keys in the file are not in the model ({_few(unexpected)})")
        if shapes:
            shown = ", ".join(f"{k}: file {a} vs model {b}" for k, a, b in shapes[:3])
            parts.append(f"{len(shapes)} tensors have other shapes ({shown}{' …' if len(shapes) > 3 else ''})")
        hint = "Check that the weights were saved from this architecture"
        classes = {a[0] for _, a, b in shapes if a[1:] == b[1:] and len(a)}
        if shapes and len(classes) == 1 and not missing and not unexpected:
            hint += f"; if the file's model has {classes.pop()} classes, pass num_classes (CLI: --num-classes)"
        raise ModelLoadError(f"the weights in {_show(path)} do not fit {what}: {'; '.join(parts)}. {hint}.")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise ModelLoadError(f"loading the weights in {_show(path)} into {what} failed: {e}") from e


# ------------------------------------------------------------------ helpers
def _existing(path: str | os.PathLike, what: str) -> Path:
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise ModelLoadError(f"{what} not found: {_show(p)}; check the path.")
    return p


def _show(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path)


def _looks_like_path(spec: str) -> bool:
    seps = [os.sep] + ([os.altsep] if os.altsep else [])
    return (any(s in spec for s in seps) or "/" in spec or spec.startswith((".", "~"))
            or Path(spec).suffix.lower() in _PATH_SUFFIXES)


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f", … {len(keys) - n} more" if len(keys) > n else "")


def _names(names: Any) -> list[str] | None:
    return [str(n) for n in names] if names else None


def _known_names() -> list[str]:
    from . import zoo

    names = ["default"] + [f"zoo:{n}" for n in zoo.FAMILIES] + list(zoo.FAMILIES)
    try:
        import torchvision.models as tvm
        from torchvision.models import segmentation

        names += [f"torchvision:{n}" for n in tvm.list_models(module=segmentation)]
    except ImportError:
        pass
    return names


def _forms() -> str:
    from . import zoo

    tv = "deeplabv3_resnet50, fcn_resnet50, lraspp_mobilenet_v3_large, …"
    return FORMS.format(zoo=", ".join(zoo.FAMILIES), tv=tv)


def _to_eval(model: nn.Module) -> None:
    try:
        model.eval()
    except NotImplementedError:  # torch.export's flat module refuses eval(): its mode is baked in
        for module in model.modules():
            module.training = False
