"""Logits out: read what the model returned and bring it to the input's size.

A model may return a tensor ``(B, C, *S')``, a dict with ``"out"`` (torchvision), an object with
``.logits`` (Hugging Face) or a tuple whose first element is the logits.  Logits smaller than the
image are resized to it inside the graph (:func:`segcam.spatial.resize`), so that regions are
always given in input pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import ModelError
from ..spatial import resize


def read_logits(output: Any, extract: Callable[[Any], Any] | None = None) -> Tensor:
    """The logits tensor inside whatever the model returned (``extract`` digs it out first)."""
    if extract is not None:
        try:
            output = extract(output)
        except Exception as e:
            raise ModelError(f"the output= function failed on the model's output: {type(e).__name__}: {e}") from e
    if isinstance(output, Tensor):
        return output
    if isinstance(output, dict) and isinstance(output.get("out"), Tensor):
        return output["out"]
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ModelError(
        f"cannot find logits in the model's output of type {type(output).__name__}; return a "
        "tensor, a dict with 'out', an object with .logits, or pass output=lambda o: ... to Explainer."
    )


@dataclass(frozen=True)
class Logits:
    """Per-class logits at the input's size, ``(B, C, *S)``; a 1-channel head is read as binary.

    For a binary head (``C == 1``, sigmoid) class 1 is the logit ``z`` and class 0 is ``-z``.
    """

    values: Tensor

    @property
    def binary(self) -> bool:
        return self.values.shape[1] == 1

    @property
    def n_classes(self) -> int:
        return 2 if self.binary else self.values.shape[1]

    def of_class(self, cls: int) -> Tensor:
        """``(B, *S)`` logit map of class ``cls``."""
        if self.binary:
            z = self.values[:, 0]
            return z if cls == 1 else -z
        return self.values[:, cls]

    def per_class(self) -> Tensor:
        """``(B, n_classes, *S)``: the values, with ``[-z, z]`` for a binary head."""
        return torch.cat([-self.values, self.values], dim=1) if self.binary else self.values

    def predicted(self) -> Tensor:
        """``(B, *S)`` predicted label map (argmax, or ``z > 0`` for a binary head)."""
        with torch.no_grad():
            if self.binary:
                return (self.values[:, 0] > 0).long()
            return self.values.argmax(dim=1)

    def crop(self, window: tuple[slice, ...]) -> Logits:
        """The logits inside a spatial window (one slice per spatial axis)."""
        return Logits(self.values[(slice(None), slice(None), *window)])


def logits_at_input_size(logits: Tensor, image: Tensor) -> Logits:
    """Check ``logits`` against ``image (B, C, *S)`` and resize them (differentiably) to ``S``."""
    if logits.ndim != image.ndim:
        raise ModelError(
            f"the model returned logits of shape {tuple(logits.shape)} for an image of shape "
            f"{tuple(image.shape)}; segcam expects (B, classes, *spatial) with the same number "
            "of spatial axes as the image."
        )
    if logits.shape[0] != image.shape[0]:
        raise ModelError(
            f"the model returned {logits.shape[0]} logit maps for a batch of {image.shape[0]} images."
        )
    if not logits.is_floating_point():
        raise ModelError(f"the model returned logits of dtype {logits.dtype}; expected floats.")
    if logits.shape[1] == 0:
        raise ModelError(f"the model returned logits with no classes (shape {tuple(logits.shape)}).")
    return Logits(resize(logits, image.shape[2:]))
