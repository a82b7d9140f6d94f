"""Running the user's model without harming it.

:func:`guarded` is the only way segcam runs a model: it takes the model's lock (so threads that
share one model take turns), puts every module in eval mode and switches ``requires_grad`` off on
every parameter (so no parameter gradient is ever computed or stored), and restores both, module
by module and parameter by parameter, on every exit path.  :func:`call_model` runs the forward,
turning a wrong channel count or a crash into a clear error.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ImageError, ModelError, SegcamError

CONV_TYPES: dict[type[nn.Module], int] = {
    nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3,
}

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock segcam holds while it runs or changes ``model`` (one per model)."""
    with _LOCKS_LOCK:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def guarded(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body holding ``model``'s lock, in eval mode with frozen parameters; restore after."""
    with model_lock(model):
        modes = [(m, m.training) for m in model.modules()]
        flags = [(p, p.requires_grad) for p in model.parameters()]
        try:
            for m, training in modes:
                if training:
                    m.training = False
            for p, flag in flags:
                if flag:
                    p.requires_grad_(False)
            yield model
        finally:
            for m, training in modes:
                if m.training != training:
                    m.training = training
            for p, flag in flags:
                if p.requires_grad != flag:
                    p.requires_grad_(flag)


def first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first registered convolution of ``model`` (a guess at its input layer), if any."""
    for name, module in model.named_modules():
        if isinstance(module, tuple(CONV_TYPES)):
            return name, module
    return None


def guess_spatial_dims(model: nn.Module) -> int | None:
    """2 or 3 from the model's first convolution; ``None`` when it has none (or is 1-D)."""
    found = first_conv(model)
    if found is None:
        return None
    dims = next(d for cls, d in CONV_TYPES.items() if isinstance(found[1], cls))
    return dims if dims in (2, 3) else None


def device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter or buffer (CPU float32 if none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def call_model(model: nn.Module, x: Tensor) -> Any:
    """``model(x)``; a wrong channel count names the first convolution, a crash is a ModelError.

    Call it inside :func:`guarded`.  The channel check is a pre-hook on the convolution that runs
    first, removed as soon as it fired.
    """
    handles: list[Any] = []

    def check(name: str):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            for h in handles:
                h.remove()
            arg = args[0] if args else None
            expected = getattr(module, "in_channels", None)
            if isinstance(arg, Tensor) and arg.ndim >= 2 and expected is not None and arg.shape[1] != expected:
                raise ImageError(
                    f"the model's first convolution {name!r} expects {expected} input channel(s) "
                    f"but the image has {arg.shape[1]} (image shape {tuple(x.shape)}); convert the "
                    f"image (e.g. grey → RGB with image.expand({expected}, ...)) or check the channel axis."
                )
        return hook

    try:
        for name, m in model.named_modules():
            if isinstance(m, tuple(CONV_TYPES)):
                handles.append(m.register_forward_pre_hook(check(name)))
        return model(x)
    except SegcamError:
        raise
    except Exception as e:
        raise ModelError(f"the model failed on an input of shape {tuple(x.shape)}: {type(e).__name__}: {e}") from e
    finally:
        for h in handles:
            h.remove()
