"""The engine's parts, in the order data flows through them.

``image`` (what the user gives → a checked batch) → ``model`` (the guard: lock, eval mode,
frozen parameters; running the model) → ``logits`` (model output → logits at the input's size)
→ ``regions`` and ``target`` (class + region → mask and the region score ``S_c``, defined only
there) → ``layers``, ``lookup`` and ``capture`` (finding, surveying and hooking layers; token grids) →
``context`` (one forward pass and what a method sees: activations, lazy gradients, forwards of
modified inputs, the score).

Names used beyond the engine (by methods written elsewhere, the apps, the evaluation code)
are re-exported here.
"""

from .context import INPUT, Context, Forward, batch_size_for
from .logits import Logits, logits_at_input_size, read_logits
from .lookup import blocks
from .model import guarded, model_lock
from .target import ResolvedTarget, Target, dice, region_dice, region_score, resolve_targets

__all__ = [
           "INPUT",
           "Context",
           "Forward",
           "Logits",
           "ResolvedTarget",
           "Target",
           "batch_size_for",
           "blocks",
           "dice",
           "guarded",
           "logits_at_input_size",
           "model_lock",
           "read_logits",
           "region_dice",
           "region_score",
           "resolve_targets",
]
