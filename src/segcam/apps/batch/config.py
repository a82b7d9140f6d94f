"""What a batch run explains and how: :class:`BatchConfig`, checked where it is made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ... import SegcamError
from ...data import DEFAULT_MAX_PIXELS
from ...errors import closest
from ...evaluation import Scoring
from ...methods import METHODS
from .decode import check_workers
from .metrics import check_metrics
from .targets import TargetSpec, parse_targets


@dataclass(frozen=True)
class BatchConfig:
    """What a batch run explains and how: ``targets`` (a :class:`~.targets.TargetSpec` or its
    text, e.g. ``"instances:1,3"``), ``methods`` with their ``options`` by method name,
    ``layers`` (``None``: the default layer), map ``dtype``, ``layer_maps`` kept or not,
    ``workers`` reading files ahead (0: in this process; ``None``: decided from the first file,
    see :mod:`.decode`), ``batch_size`` items through the model
    together (module docstring), ``csv`` next to the Parquet table;
    ``metrics`` (see :mod:`.metrics`: masking, deletion, insertion, evidence) measured as
    ``scoring`` says, and an overlay PNG per explanation in ``DIR/overlays`` with ``overlays``."""

    targets: TargetSpec | str = "predicted"
    methods: tuple[str, ...] = ("seg-grad-cam",)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layers: tuple[str, ...] | None = None
    dtype: str = "float16"
    layer_maps: bool = False
    workers: int | None = None
    ahead: int = 8
    batch_size: int = 8
    csv: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    flush_every: int = 256
    metrics: tuple[str, ...] = ()
    scoring: Scoring = Scoring()
    overlays: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", check_metrics(self.metrics))
        if isinstance(self.methods, str) or not isinstance(self.methods, Sequence) or not self.methods:
            raise SegcamError(f"methods must be a non-empty tuple of method names, got {self.methods!r}.")
        for method in self.methods:
            if method not in METHODS:
                near = closest(str(method), list(METHODS), n=3)
                raise SegcamError(f"unknown method {method!r}" + (f" (did you mean {', '.join(near)}?)" if near else "")
                                  + f"; the methods are {', '.join(sorted(METHODS))}.")
        check_workers(self.workers)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SegcamError(f"batch_size must be a positive integer (items through the model together; 1: one "
                              f"at a time), got {self.batch_size!r}.")
        if not isinstance(self.scoring, Scoring):
            raise SegcamError(f"scoring must be a segcam.evaluation.Scoring, got {type(self.scoring).__name__}.")
        if not isinstance(self.overlays, bool):
            raise SegcamError(f"overlays must be True or False, got {self.overlays!r}.")

    def spec(self) -> TargetSpec:
        return self.targets if isinstance(self.targets, TargetSpec) else parse_targets(self.targets)
