"""What a batch run explains and how: :class:`BatchConfig`, checked where it is made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ... import SegcamError
from ...data import DEFAULT_MAX_PIXELS
from ...errors import closest
from ...evaluation import Scoring
from ...methods import METHODS, create
from .decode import check_workers
from .metrics import check_metrics
from .targets import TargetSpec, parse_targets


@dataclass(frozen=True)
class BatchConfig:
    """What a batch run explains and how: ``targets`` (a :class:`~.targets.TargetSpec` or its
    text, e.g. ``"instances:1,3"``), ``methods`` with their ``options`` by method name,
    ``layers`` (``None``: the default layer), map ``dtype``, ``layer_maps`` kept or not,
    ``workers`` reading files ahead (0: in this process; ``None``: decided from the files,
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
        if len(set(self.methods)) != len(self.methods):
            raise SegcamError(f"methods names a method twice ({list(self.methods)}); give each once.")
        self._check_options()
        if self.layers is not None and (isinstance(self.layers, str) or not isinstance(self.layers, Sequence)
                                        or not self.layers or not all(isinstance(n, str) for n in self.layers)):
            raise SegcamError(f"layers must be a non-empty tuple of layer names (e.g. ('downs.2',)) or None for the "
                              f"default layer, got {self.layers!r}.")
        if self.max_pixels is not None and (isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int)
                                            or self.max_pixels < 1):
            raise SegcamError(f"max_pixels must be a positive integer (the largest image read) or None for no "
                              f"limit, got {self.max_pixels!r}.")
        if isinstance(self.ahead, bool) or not isinstance(self.ahead, int) or self.ahead < 1:
            raise SegcamError(f"ahead must be a positive integer (items read in advance), got {self.ahead!r}.")
        check_workers(self.workers)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SegcamError(f"batch_size must be a positive integer (items through the model together; 1: one "
                              f"at a time), got {self.batch_size!r}.")
        if not isinstance(self.scoring, Scoring):
            raise SegcamError(f"scoring must be a segcam.evaluation.Scoring, got {type(self.scoring).__name__}.")
        if not isinstance(self.overlays, bool):
            raise SegcamError(f"overlays must be True or False, got {self.overlays!r}.")

    def _check_options(self) -> None:
        """Options only for methods that run, each accepted by its method (as ``explain`` checks it)."""
        if not isinstance(self.options, Mapping):
            raise SegcamError(f"options must be a dict of method name → its options, got {self.options!r}.")
        for method, options in self.options.items():
            if method not in self.methods:
                raise SegcamError(f"options are given for {method!r}, which this run does not use (methods: "
                                  f"{', '.join(self.methods)}); add it to methods or drop its options.")
            if not isinstance(options, Mapping):
                raise SegcamError(f"options[{method!r}] must be a dict of option → value, got {options!r}.")
            create(method, options)  # raises a SegcamError naming a bad option and its fix

    def spec(self) -> TargetSpec:
        return self.targets if isinstance(self.targets, TargetSpec) else parse_targets(self.targets)
