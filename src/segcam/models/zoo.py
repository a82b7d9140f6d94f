"""Model families segcam knows: how to build each offline, and which of its layers to look at.

A :class:`Family` builds a model with random weights (nothing is downloaded), maps readable
layer names (``"encoder2"``, ``"bottleneck"``, ``"block3.1.attn-norm"``) to module names, names
its default layer (the bottleneck, as the papers recommend) and gives its usual preprocessing.
Adding a family is one :func:`register` call.

>>> model = build("vgg-unet", num_classes=6)                        # doctest: +SKIP
>>> names, default = layer_names("vgg-unet", model)                 # doctest: +SKIP
>>> names["encoder3"], default                                      # doctest: +SKIP
('encoder.block3', 'encoder.block5')
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..checks import check_int, check_str
from ..errors import ModelLoadError, SegcamError, closest
from .nets import DEFAULT_ARCH, UNet, VGGUNet
from .preprocess import Preprocess

EXTRAS = {"segmentation_models_pytorch": "smp"}  # segcam's extra for a package, where not its name


@dataclass(frozen=True)
class Family:
    """How to build, name and feed one kind of segmentation model.

    ``build(num_classes, in_channels, dims)`` returns the model with random weights;
    ``layers(model)`` maps readable names to module names; ``default`` is a readable name.
    """

    name: str
    build: Callable[[int, int, int], nn.Module]
    layers: Callable[[nn.Module], dict[str, str]]
    default: str
    preprocess: Preprocess = field(default_factory=Preprocess)
    dims: tuple[int, ...] = (2,)
    requires: str | None = None  # the optional package it needs (an extra of segcam)
    description: str = ""
    train_steps: int = 300  # `segcam train --family` default: a few minutes on 2 CPU cores

    def available(self) -> bool:
        """Whether the package the family needs is installed."""
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (replacing one of the same name) and return it."""
    if not isinstance(family, Family):
        raise SegcamError(f"register takes a Family, got a {type(family).__name__}.")
    FAMILIES[family.name] = family
    return family


def family(name: str) -> Family:
    """The family called ``name``; unknown names and families whose package is missing raise
    :class:`ModelLoadError` with the fix."""
    name = check_str(name, "the model family name", error=ModelLoadError)
    if name not in FAMILIES:
        near = closest(name, FAMILIES)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise ModelLoadError(f"unknown model family {name!r}.{hint} Known: {', '.join(FAMILIES)}.")
    found = FAMILIES[name]
    if not found.available():
        extra = EXTRAS.get(found.requires, found.requires)
        raise ModelLoadError(f"model family {name!r} needs the package {found.requires!r}; install it "
                             f"with pip install 'segcam[{extra}]'.")
    return found


def build(name: str, num_classes: int = DEFAULT_ARCH["num_classes"], in_channels: int = 3,
          dims: int | None = None) -> nn.Module:
    """A model of family ``name`` with random weights, in eval mode (``dims``: the family's first)."""
    found = family(name)
    num_classes = check_int(num_classes, "num_classes", low=1)
    in_channels = check_int(in_channels, "in_channels", low=1)
    dims = found.dims[0] if dims is None else check_int(dims, "dims")
    if dims not in found.dims:
        raise SegcamError(f"model family {name!r} is {'/'.join(map(str, found.dims))}-D, not {dims}-D; "
                          "pass dims=None for its default.")
    return found.build(num_classes, in_channels, dims).eval()


def layer_names(name: str, model: nn.Module) -> tuple[dict[str, str], str]:
    """``model``'s readable layer names → module names under family ``name``, and the module
    name of the family's default layer."""
    found = family(name)
    if not isinstance(model, nn.Module):
        raise SegcamError(f"layer_names needs a torch nn.Module, got a {type(model).__name__}.")
    names = found.layers(model)
    return names, names[found.default]


# ------------------------------------------------------------------ segcam's own U-Nets
def _unet_layers(model: nn.Module) -> dict[str, str]:
    depth = len(model.downs)
    names = {"stem": "stem", "bottleneck": f"downs.{depth - 1}", "head": "head"}
    names |= {f"encoder{i + 1}": f"downs.{i}" for i in range(depth)}
    return names | {f"decoder{i + 1}": f"ups.{i}" for i in range(depth)}


def _build_unet(num_classes: int, in_channels: int, dims: int) -> nn.Module:
    return UNet(**{**DEFAULT_ARCH, "num_classes": num_classes, "in_channels": in_channels, "dims": dims})


register(Family("unet", _build_unet, _unet_layers, "bottleneck", dims=(2, 3), description="segcam's U-Net "
                "(the default model's architecture)"))


def _vgg_unet_layers(model: nn.Module) -> dict[str, str]:
    names = {f"encoder{i}": f"encoder.block{i}" for i in range(1, 6)}
    names |= {f"decoder{i}": f"decoder.up{i}" for i in range(1, 5)}
    return names | {"bottleneck": "encoder.block5", "head": "head"}


register(Family("vgg-unet", lambda classes, cin, dims: VGGUNet(cin, classes), _vgg_unet_layers, "bottleneck",
                description="U-Net with a VGG-16-style encoder (Seg-XRes-CAM's medical model)"))


# ------------------------------------------------------------------ torchvision
def _resnet_seg_layers(model: nn.Module) -> dict[str, str]:
    names = {"stem": "backbone.relu", "bottleneck": "backbone.layer4"}
    names |= {f"encoder{i}": f"backbone.layer{i}" for i in range(1, 5)}
    if type(model.classifier[0]).__name__ == "ASPP":  # DeepLabV3; FCN's head is a plain conv stack
        return names | {"aspp": "classifier.0", "head": "classifier.3"}
    return names | {"head": "classifier.2"}


def _mobilenet_seg_layers(model: nn.Module) -> dict[str, str]:
    n = len(model.backbone)
    names = {f"encoder{i}": f"backbone.{i}" for i in range(n)}
    return names | {"stem": "backbone.0", "bottleneck": f"backbone.{n - 1}", "aspp": "classifier.0",
                    "head": "classifier.3"}


def _torchvision(builder: str) -> Callable[[int, int, int], nn.Module]:
    def build_model(num_classes: int, in_channels: int, dims: int) -> nn.Module:
        from torchvision.models import segmentation

        if in_channels != 3:
            raise SegcamError(f"torchvision's {builder} takes 3 input channels, not {in_channels}.")
        return getattr(segmentation, builder)(weights=None, weights_backbone=None, num_classes=num_classes,
                                              aux_loss=False)
    return build_model


for _name, _builder, _layers in (
    ("deeplabv3-resnet50", "deeplabv3_resnet50", _resnet_seg_layers),
    ("deeplabv3-mobilenet", "deeplabv3_mobilenet_v3_large", _mobilenet_seg_layers),
    ("fcn-resnet50", "fcn_resnet50", _resnet_seg_layers),
):
    register(Family(
        _name, _torchvision(_builder), _layers, "bottleneck", Preprocess.imagenet(), requires="torchvision",
        description=f"torchvision {_builder} (eval mode needed: BN in ASPP)",
        train_steps=100 if "resnet50" in _builder else 300,  # ResNet-50: ~2 s a step on 2 cores
    ))


# ------------------------------------------------------------------ Hugging Face SegFormer
# A SegFormer encoder's module names in transformers 5 ("stages") and 4 ("encoder"); {i}: stage,
# {j}: block, both from 0.
_SEGFORMER_MODULES = {
    "stages": {"stage": "segformer.stages.{i}",  # the stage's output, already (B, C, h, w)
               "block": "segformer.stages.{i}.blocks.{j}",
               "attn-norm": "layernorm_before", "attn-dropout": "hidden_dropout"},
    "encoder": {"stage": "segformer.encoder.layer_norm.{i}",  # tokens (B, N, C), laid on the grid
                "block": "segformer.encoder.block.{i}.{j}",
                "attn-norm": "layer_norm_1", "attn-dropout": "attention.output.dropout"},
}


def _segformer_layers(model: nn.Module) -> dict[str, str]:
    """``stage1`` … ``stage4`` (the encoder's stage outputs, 1/4 … 1/32 of the input),
    ``bottleneck`` (the last stage), ``decode-head`` (the fused features the classifier reads)
    and, for block ``j`` of stage ``i`` (from 1), ``block{i}.{j}.attn-norm`` (the LayerNorm before
    self-attention), ``block{i}.{j}.attn-dropout`` (after the attention's output projection) and
    ``block{i}.{j}.mixffn-dwconv`` (Mix-FFN's depth-wise 3×3 convolution): the layers of the
    Grad-CAM U-Net/SegFormer paper's figures 2 and 3."""
    m = _SEGFORMER_MODULES["stages" if hasattr(model.segformer, "stages") else "encoder"]
    depths = model.config.depths
    names = {f"stage{i + 1}": m["stage"].format(i=i) for i in range(len(depths))}
    for i, depth in enumerate(depths):
        for j in range(depth):
            block, readable = m["block"].format(i=i, j=j), f"block{i + 1}.{j + 1}"
            names[f"{readable}.attn-norm"] = f"{block}.{m['attn-norm']}"
            names[f"{readable}.attn-dropout"] = f"{block}.{m['attn-dropout']}"
            names[f"{readable}.mixffn-dwconv"] = f"{block}.mlp.dwconv.dwconv"
    return names | {"bottleneck": names[f"stage{len(depths)}"], "decode-head": "decode_head.activation"}


def _build_segformer(num_classes: int, in_channels: int, dims: int) -> nn.Module:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(  # MiT-b0
        num_channels=in_channels, num_labels=num_classes, hidden_sizes=[32, 64, 160, 256],
        depths=[2, 2, 2, 2], num_attention_heads=[1, 2, 5, 8], decoder_hidden_size=256,
    )
    return SegformerForSemanticSegmentation(config)


register(Family(
    "segformer", _build_segformer, _segformer_layers, "bottleneck", Preprocess.imagenet(), requires="transformers",
    description="Hugging Face SegFormer, MiT-b0 size; logits at 1/4 of the input (segcam resizes them); "
                "any input size",
))


# ------------------------------------------------------------------ MONAI
UNETR_SIZE = {2: 64, 3: 32}  # UNETR's fixed input size per dims (16-pixel patches: 4² / 2³ tokens)


def _unetr_layers(model: nn.Module) -> dict[str, str]:
    """``vit.block1`` … ``vit.block12`` (tokens), ``bottleneck`` = ``vit.output`` (the ViT's final
    LayerNorm, which the decoder starts from), MONAI's ``encoder1`` … ``encoder4`` and
    ``decoder5`` … ``decoder2``, and ``head``."""
    names = {f"vit.block{k + 1}": f"vit.blocks.{k}" for k in range(len(model.vit.blocks))}
    names |= {f"encoder{i}": f"encoder{i}" for i in range(1, 5)}
    names |= {f"decoder{i}": f"decoder{i}" for i in range(2, 6)}
    return names | {"vit.output": "vit.norm", "bottleneck": "vit.norm", "head": "out"}


def _build_unetr(num_classes: int, in_channels: int, dims: int) -> nn.Module:
    from monai.networks.nets import UNETR

    return UNETR(in_channels, num_classes, img_size=UNETR_SIZE[dims], feature_size=16, hidden_size=96,
                 mlp_dim=384, num_heads=4, spatial_dims=dims)


register(Family(
    "unetr", _build_unetr, _unetr_layers, "bottleneck", dims=(2, 3), requires="monai",
    preprocess=Preprocess(size=(UNETR_SIZE[2],) * 2),  # the 2-D build's; the 3-D one takes 32³
    description="MONAI UNETR (12 ViT blocks, hidden 96, 4 heads, feature size 16); input 64×64 (2-D) / "
                "32³ (3-D) exactly",
))


def _monai_unet_layers(model: nn.Module) -> dict[str, str]:
    """MONAI's UNet nests each level in the one above (``model.1.submodule.1.submodule…``): level
    ``i`` is a Sequential (down, SkipConnection(next level), up).  ``encoder{i}`` is its down
    block, ``decoder{i}`` its up block (``decoder1`` makes the logits: ``head``), and
    ``bottleneck`` the innermost block."""
    modules = dict(model.named_modules())
    names, path, level = {}, "model", 1
    while isinstance(modules[path], nn.Sequential):
        names[f"encoder{level}"], names[f"decoder{level}"] = f"{path}.0", f"{path}.2"
        path, level = f"{path}.1.submodule", level + 1
    return names | {"bottleneck": path, "head": names["decoder1"]}


def _build_monai_unet(num_classes: int, in_channels: int, dims: int) -> nn.Module:
    from monai.networks.nets import UNet as MonaiUNet

    return MonaiUNet(dims, in_channels, num_classes, channels=(16, 32, 64, 128), strides=(2, 2, 2),
                     num_res_units=1)


register(Family(
    "monai-unet", _build_monai_unet, _monai_unet_layers, "bottleneck", dims=(2, 3), requires="monai",
    description="MONAI UNet, channels 16-128, 3 strides of 2, 1 residual unit; sizes divisible by 8",
))


def _swin_unetr_layers(model: nn.Module) -> dict[str, str]:
    """``swin.embed`` and ``swin.stage1`` … ``swin.stage4`` (the Swin encoder), MONAI's
    ``encoder1`` … ``encoder4``, ``bottleneck`` = ``encoder10`` (the convolutional block on the
    deepest Swin features, where the decoder starts), ``decoder5`` … ``decoder1`` and ``head``."""
    names = {f"swin.stage{i}": f"swinViT.layers{i}.0" for i in range(1, 5)}
    names |= {f"encoder{i}": f"encoder{i}" for i in range(1, 5)}
    names |= {f"decoder{i}": f"decoder{i}" for i in range(1, 6)}
    return names | {"swin.embed": "swinViT.patch_embed", "bottleneck": "encoder10", "head": "out"}


def _build_swin_unetr(num_classes: int, in_channels: int, dims: int) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    sized = "img_size" in inspect.signature(SwinUNETR).parameters  # required before MONAI 1.5
    options: dict[str, Any] = {"img_size": (64,) * dims} if sized else {}
    return SwinUNETR(in_channels=in_channels, out_channels=num_classes, feature_size=12, spatial_dims=dims, **options)


register(Family(
    "swin-unetr", _build_swin_unetr, _swin_unetr_layers, "bottleneck", dims=(2, 3), requires="monai",
    description="MONAI SwinUNETR, feature size 12; sizes divisible by 32 and one of them at least 64 "
                "(a 1-pixel bottleneck fails in MONAI's instance norm, e.g. at 32³)",
))


# ------------------------------------------------------------------ segmentation_models_pytorch
def _smp_unet_layers(model: nn.Module) -> dict[str, str]:
    """ResNet ``stem`` and ``encoder1`` … ``encoder4``, ``bottleneck`` (= ``encoder4``),
    ``decoder1`` … ``decoder5`` from the deepest, and ``head`` (the logits)."""
    names = {f"encoder{i}": f"encoder.layer{i}" for i in range(1, 5)}
    names |= {f"decoder{i + 1}": f"decoder.blocks.{i}" for i in range(len(model.decoder.blocks))}
    return names | {"stem": "encoder.relu", "bottleneck": "encoder.layer4", "head": "segmentation_head"}


def _build_smp_unet(num_classes: int, in_channels: int, dims: int) -> nn.Module:
    import segmentation_models_pytorch as smp

    return smp.Unet("resnet18", encoder_weights=None, in_channels=in_channels, classes=num_classes)


register(Family(
    "smp-unet", _build_smp_unet, _smp_unet_layers, "bottleneck", Preprocess.imagenet(),
    requires="segmentation_models_pytorch",
    description="segmentation_models_pytorch U-Net with a ResNet-18 encoder; sizes divisible by 32",
))
