"""A local Hugging Face model folder (``save_pretrained``): model, class names and preprocessing.

The model comes from ``AutoModelForSemanticSegmentation.from_pretrained(folder,
local_files_only=True)`` (or the architecture class ``config.json`` names), class names from
``config.id2label``, preprocessing from ``preprocessor_config.json``.  Nothing is downloaded,
``trust_remote_code`` is never used, and pickled weights (``pytorch_model.bin``) go through
transformers' own ``weights_only`` check unless ``allow_pickle``.
"""

from __future__ import annotations

import inspect
import json
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import ModelLoadError, SegcamError, UnsafePickleError
from .._common import few, show_path
from ..preprocess import Preprocess
from .base import LoadedModel, loaded, no_classes
from .files import TRUST


def load_huggingface(folder: Path, num_classes: int | None, allow_pickle: bool) -> LoadedModel:
    """The model saved in ``folder``, which holds a ``config.json``."""
    config = _read_json(folder / "config.json")
    if config.get("auto_map"):
        raise ModelLoadError(f"the Hugging Face model in {show_path(folder)} needs its own Python code "
                             "(trust_remote_code), which segcam never runs; build it yourself and pass a factory "
                             "spec package.module:function that returns it.")
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ModelLoadError(f"{show_path(folder)} is a Hugging Face model folder; loading it needs transformers: "
                             "pip install transformers.") from None
    version = tuple(int(v) for v in re.findall(r"\d+", transformers.__version__)[:2])
    kwargs: dict[str, Any] = {"local_files_only": True, "output_loading_info": True,
                              "dtype" if version >= (4, 56) else "torch_dtype": torch.float32}
    if allow_pickle and "weights_only" in inspect.signature(transformers.PreTrainedModel.from_pretrained).parameters:
        kwargs["weights_only"] = False
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model, info = _from_pretrained(transformers, folder, config, kwargs)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    params = dict(model.named_parameters())
    missing = [k for k in info.get("missing_keys", []) if k in params]
    if missing:
        raise ModelLoadError(
            f"the weights in {show_path(folder)} do not cover the model: {len(missing)} parameters would be random "
            f"({few(missing)}). Were they saved from another architecture (e.g. a backbone without its segmentation "
            "head)? Save the full model with save_pretrained."
        )
    no_classes(num_classes, "a Hugging Face model", getattr(model.config, "num_labels", None))
    preprocess = _preprocess(folder, getattr(model.config, "num_channels", None) or 3)
    return loaded(model, preprocess, _labels(getattr(model.config, "id2label", None)),
                  f"Hugging Face {type(model).__name__} from {show_path(folder)}",
                  getattr(model.config, "model_type", None))


def _from_pretrained(transformers: Any, folder: Path, config: dict, kwargs: dict[str, Any]) -> tuple[nn.Module, dict]:
    """The model and its loading info, by the auto class or else the architecture config.json names."""
    try:
        try:
            return transformers.AutoModelForSemanticSegmentation.from_pretrained(str(folder), **kwargs)
        except ValueError as e:
            if "Unrecognized configuration class" not in str(e):
                raise
        archs = [a for a in config.get("architectures") or [] if hasattr(transformers, a)]
        if not archs:
            raise ModelLoadError(
                f"the Hugging Face model in {show_path(folder)} (model_type {config.get('model_type')!r}) is not a "
                "semantic-segmentation model transformers knows, and config.json names no architecture class to "
                "use; load it yourself and pass a factory spec package.module:function."
            )
        return getattr(transformers, archs[0]).from_pretrained(str(folder), **kwargs)
    except SegcamError:
        raise
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(
            f"the Hugging Face folder {show_path(folder)} stores its weights as a pickle (pytorch_model.bin) that "
            f"holds Python objects; unpickling them could run code. {TRUST} Safer: save the model with "
            "save_pretrained, which writes model.safetensors."
        ) from e
    except Exception as e:
        raise ModelLoadError(f"cannot load the Hugging Face model in {show_path(folder)}: "
                             f"{type(e).__name__}: {e}") from e


def _read_json(file: Path) -> dict:
    """A JSON object from ``file``, or a clear error."""
    try:
        found = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {show_path(file)}: {e}; fix or delete it.") from None
    if not isinstance(found, dict):
        raise ModelLoadError(f"{show_path(file)} is not a JSON object; save the model with save_pretrained.")
    return found


def _labels(id2label: Any) -> list[str] | None:
    """Class names from ``config.id2label``; ``None`` for transformers' placeholders (``LABEL_0`` …)."""
    if not isinstance(id2label, Mapping) or not id2label:
        return None
    try:
        items = sorted((int(k), str(v)) for k, v in id2label.items())
    except (TypeError, ValueError):
        return None
    names = [v for _, v in items]
    if [i for i, _ in items] != list(range(len(items))) or all(re.fullmatch(r"LABEL_\d+", v) for v in names):
        return None
    return names


def _preprocess(folder: Path, channels: int) -> Preprocess:
    """Resize and normalisation from ``preprocessor_config.json``; ImageNet's without one.

    segcam's images are in [0, 1] already, so the processor's rescale (1/255) is left out.  A
    ``shortest_edge`` size (keeping the aspect ratio) cannot be expressed and leaves the size alone.
    """
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return Preprocess.imagenet()
    cfg = _read_json(file)

    def per_channel(value: Any) -> Any:
        if value is None:
            return None
        values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        return values * channels if len(values) == 1 else values

    mean = std = size = None
    if cfg.get("do_normalize", True):
        mean, std = per_channel(cfg.get("image_mean")), per_channel(cfg.get("image_std"))
    raw = cfg.get("size")
    if cfg.get("do_resize", True) and raw is not None:
        if isinstance(raw, int):
            size = (raw, raw)
        elif isinstance(raw, Mapping) and "height" in raw and "width" in raw:
            size = (raw["height"], raw["width"])
        elif isinstance(raw, (list, tuple)) and len(raw) == 2:
            size = tuple(raw)
    try:
        return Preprocess(size=size, mean=mean, std=std, channels=channels)
    except SegcamError as e:
        raise ModelLoadError(f"{show_path(file)} does not describe a usable preprocessing: {e} "
                             "Fix or delete it.") from None
