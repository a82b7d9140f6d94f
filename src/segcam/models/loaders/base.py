"""What :func:`~segcam.models.loaders.load_model` returns, and the small rules its sources share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ...errors import ModelLoadError
from .. import zoo
from .._common import show_path
from ..nets import UNet, VGGUNet
from ..preprocess import Preprocess

_OWN_FAMILIES = {UNet: "unet", VGGUNet: "vgg-unet"}
FORMS = """accepted model specs:
  default                   segcam's bundled U-Net
  zoo:NAME or NAME          a segcam zoo family ({zoo}) [+ weights file]
  torchvision:NAME          a torchvision segmentation model ({tv}) [+ weights file]
  package.module:function   a Python factory returning an nn.Module [+ weights file]
  PATH                      a TorchScript file, a torch.export .pt2 file, a segcam .safetensors
                            file, a Hugging Face model folder (config.json), or a pickled model
                            (only with allow_pickle=True / --allow-pickle)"""


@dataclass(frozen=True)
class LoadedModel:
    """A model :func:`~segcam.models.loaders.load_model` loaded, and what segcam knows about it.

    ``model`` is in eval mode.  ``preprocess`` is its source's usual preprocessing (or the one
    passed to ``load_model``); ``class_names`` has one name per class where the source gives
    them; ``source`` says where the model came from, for people.  ``family`` is its
    :mod:`~segcam.models.zoo` family when known; then ``layer_names`` maps the family's readable
    layer names to module names and ``default_layer`` is the module name of its default layer
    (``{}`` and ``None`` without a family).  ``segcam.Explainer.from_loaded`` reads ``model``,
    ``class_names``, ``layer_names`` and ``default_layer``.
    """

    model: nn.Module
    preprocess: Preprocess
    class_names: list[str] | None
    source: str
    family: str | None = None
    layer_names: dict[str, str] = field(default_factory=dict)
    default_layer: str | None = None


def loaded(model: nn.Module, preprocess: Preprocess, class_names: Sequence[str] | None, source: str,
           family: str | None = None) -> LoadedModel:
    """A :class:`LoadedModel` in eval mode, with ``family``'s layer names when they all exist in
    ``model`` (otherwise the family is dropped: the model is not of that family after all)."""
    to_eval(model)
    names: dict[str, str] = {}
    default: str | None = None
    if family is not None:
        try:
            names, default = zoo.layer_names(family, model)
        except Exception:  # noqa: BLE001 - an unknown family, or names the model does not have
            names = {}
        modules = dict(model.named_modules())
        if not names or not all(module in modules for module in names.values()):
            family, names, default = None, {}, None
    listed = [str(name) for name in class_names] if class_names else None
    return LoadedModel(model, preprocess, listed, source, family, names, default)


def to_eval(model: nn.Module) -> None:
    """Put ``model`` and all its submodules in eval mode."""
    try:
        model.eval()
    except NotImplementedError:  # torch.export's flat module refuses eval(): set the flags directly
        for module in model.modules():
            module.training = False


def own_family(model: nn.Module) -> str | None:
    """The zoo family of segcam's own network classes (the exact class, not subclasses)."""
    return _OWN_FAMILIES.get(type(model))


def family_preprocess(family: str | None) -> Preprocess:
    """The usual preprocessing of a zoo family; none (an identity) without one."""
    return zoo.FAMILIES[family].preprocess if family in zoo.FAMILIES else Preprocess()


def no_weights(weights: Path | None, what: str) -> None:
    """Refuse a ``weights`` file for a source that carries its own weights."""
    if weights is not None:
        raise ModelLoadError(f"weights ({show_path(weights)}) apply only to zoo:, torchvision: and factory specs; "
                             f"{what} carries its own weights. Leave weights out.")


def no_classes(num_classes: int | None, what: str, actual: int | None = None) -> None:
    """Refuse a ``num_classes`` other than ``actual`` for a source that fixes its own classes."""
    if num_classes is not None and num_classes != actual:
        known = f" ({actual})" if actual else ""
        raise ModelLoadError(f"num_classes={num_classes} applies only to zoo:, torchvision: and factory specs; "
                             f"{what} fixes its own classes{known}. Leave num_classes out.")


def forms() -> str:
    """:data:`FORMS` with the zoo's families filled in, to end an error about a spec."""
    tv = "deeplabv3_resnet50, fcn_resnet50, lraspp_mobilenet_v3_large, …"
    return FORMS.format(zoo=", ".join(zoo.FAMILIES), tv=tv)


def only_weights(path: Path, what: str) -> ModelLoadError:
    """The error for a model spec that is a file of weights only (``what`` says what it holds)."""
    return ModelLoadError(
        f"{show_path(path)} holds only weights ({what}), which do not say which architecture they belong to. "
        "Pass them as weights with an architecture spec: load_model('zoo:NAME' | 'torchvision:NAME' | "
        f"'package.module:function', weights={str(path)!r}) (CLI: --model SPEC --weights {path})."
    )
