"""Leave the user's model exactly as it was found.

While segcam runs a model it puts every module in eval mode and switches ``requires_grad``
off on every parameter (so no parameter gradient is ever computed or stored).  Both are
restored, module by module and parameter by parameter, on every exit path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def guarded(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body with ``model`` in eval mode and its parameters frozen; restore both after."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if any(training for _, training in modes):
            model.eval()
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
