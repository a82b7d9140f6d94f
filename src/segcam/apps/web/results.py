"""An explanation as the server keeps it for the masking test and the downloads.

The downloads are what a user needs to take the view away: the heatmap (PNG of the slice shown,
``.npy`` of the whole map), the figure, the region (``region.npy``, for ``--mask``), the image the
model saw before preprocessing (``image.npy``: a volume's slice for a 2-D model), and the
command and snippet that reproduce the map.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from .regions import Slice
from .sessions import NotFound, forward_bytes

KINDS = ("heatmap.png", "heatmap.npy", "region.npy", "image.npy", "figure.png", "command.txt", "snippet.py")


@dataclass
class Result:
    """``map (*S)`` in [0, 1] and ``region (*S)`` for class ``cls`` of model input ``x``;
    ``picture`` is what the model saw before preprocessing, ``shown`` the picture drawn on the
    page and ``where`` the slice shown when the model explains a whole volume."""

    model: str
    x: Tensor
    picture: Tensor
    map: Tensor
    region: Tensor
    cls: int
    where: Slice | None
    shown: Tensor
    title: str
    command: str
    python: str

    @property
    def nbytes(self) -> int:
        return forward_bytes([self.x, self.picture, self.map, self.region, self.shown])

    def on_page(self, values: Tensor) -> Tensor:
        """``values (*S)`` as the page shows them (the slice of a volume)."""
        return self.where.take(values) if self.where else values

    def download(self, kind: str) -> tuple[bytes, str]:
        """The file ``kind`` (one of :data:`KINDS`) as ``(bytes, media type)``."""
        if kind == "heatmap.png":
            from . import pictures

            return pictures.png(pictures.to_bytes(self.on_page(self.map)).cpu().numpy()), "image/png"
        if kind in ("heatmap.npy", "region.npy", "image.npy"):
            values = {"heatmap.npy": self.map.float(), "region.npy": self.region, "image.npy": self.picture}[kind]
            buffer = io.BytesIO()
            np.save(buffer, values.detach().cpu().numpy())
            return buffer.getvalue(), "application/octet-stream"
        if kind == "figure.png":
            from ...viz import save_overlay

            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "figure.png"
                save_overlay(path, self.shown, self.on_page(self.map), self.on_page(self.region), title=self.title)
                return path.read_bytes(), "image/png"
        if kind == "command.txt":
            return (self.command + "\n").encode(), "text/plain"
        if kind == "snippet.py":
            return self.python.encode(), "text/x-python"
        raise NotFound(f"unknown download {kind!r}; choose one of {', '.join(KINDS)}.")
