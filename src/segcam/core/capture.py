"""Capture the layers whose activations are explained, with forward hooks.

A layer's output may be a tensor, or a tuple/list/dict holding one (Hugging Face blocks return
``(hidden_states, attentions)``): the first tensor stands for the layer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn


def main_tensor(output: Any) -> tuple[Tensor | None, Any]:
    """The tensor a layer's output stands for, and the key/index to put a replacement back."""
    if isinstance(output, Tensor):
        return output, None
    if isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            if isinstance(item, Tensor):
                return item, i
    if isinstance(output, Mapping):
        for key, item in output.items():
            if isinstance(item, Tensor):
                return item, key
    return None, None


def replace_main(output: Any, key: Any, tensor: Tensor) -> Any:
    """``output`` with its main tensor swapped for ``tensor`` (same container type)."""
    if key is None:
        return tensor
    if isinstance(output, tuple):
        items = list(output)
        items[key] = tensor
        return type(output)(*items) if hasattr(output, "_fields") else type(output)(items)
    if isinstance(output, list):
        items = list(output)
        items[key] = tensor
        return items
    copy = output.copy() if hasattr(output, "copy") else dict(output)
    copy[key] = tensor
    return copy


class Capture:
    """Forward hooks that keep each requested layer's output.

    With ``record=True`` the output is handed back as a differentiable tensor: if nothing
    upstream requires gradients (segcam freezes the parameters while explaining), it is detached
    into a fresh leaf, so a backward pass stops there — no parameter gradients, nothing computed
    below the layer — and the model continues with a clone, so in-place operations after the
    layer (``ReLU(inplace=True)``) cannot change the captured activation.  With ``record=False``
    a detached copy is kept and the model runs unchanged.  Only calls from the thread that made
    the capture are recorded: a forward pass another thread runs on the same module at the same
    time (the user's own prediction, say) is not mistaken for ours.
    """

    def __init__(self, modules: Mapping[str, nn.Module], record: bool = True):
        self.modules = dict(modules)
        self.record = record
        self.activations: dict[str, Tensor] = {}
        self.calls: dict[str, int] = {name: 0 for name in modules}
        self.problems: dict[str, str] = {}
        self._owner = threading.get_ident()

    def _hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if threading.get_ident() != self._owner:
                return None
            t, key = main_tensor(output)
            self.calls[name] += 1
            if t is None or not t.is_floating_point():
                kind = type(output).__name__ if t is None else f"a {t.dtype} tensor"
                self.problems[name] = f"its output is {kind}, not a floating-point tensor"
                return None
            if not self.record:
                self.activations[name] = t.detach().clone()  # later in-place ops must not reach it
                return None
            if not t.requires_grad:
                t = t.detach().requires_grad_(True)
            self.activations[name] = t
            return replace_main(output, key, t.clone())
        return hook

    @contextmanager
    def hooks(self) -> Iterator[Capture]:
        """Hooks on every requested module while the body runs; always removed after."""
        handles = []
        try:
            for name, module in self.modules.items():
                handles.append(module.register_forward_hook(self._hook(name)))
            yield self
        finally:
            for h in handles:
                h.remove()
