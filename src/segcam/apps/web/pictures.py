"""What the page draws: images, label maps and heatmaps as PNG bytes and compact byte strings.

Tensors are turned into 8-bit pictures only here, at the edge of the server.  A heatmap goes
out as one byte per pixel (``round(255 · value)`` of the normalised map): the page colours it
(jet, alpha rising with the value) and shows the value under the cursor — cheaper than a PNG,
which costs as much as the backward pass itself on a small model.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import Tensor

from ...viz import HEATMAP_CMAP, class_colormap


def png(array: np.ndarray) -> bytes:
    """PNG bytes of an 8-bit ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def to_bytes(values: Tensor) -> Tensor:
    """``(H, W)`` values in [0, 1] → uint8 ``round(255 · v)``."""
    return (values.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def display(image: Tensor) -> np.ndarray:
    """A ``(C, H, W)`` picture as 8-bit grey or RGB, each picture stretched to its own min..max
    (``.npy`` and medical images come in any range); other channel counts show the first."""
    x = image.detach().float()
    x = x[:3] if x.shape[0] == 3 else x[:1]
    low, high = x.min(), x.max()
    x = (x - low) / (high - low) if high > low else torch.zeros_like(x)
    out = to_bytes(x).permute(1, 2, 0).cpu().numpy()
    return out[..., 0] if out.shape[-1] == 1 else out


def class_colors(n_classes: int) -> list[str]:
    """One ``#rrggbb`` colour per class (the figures' class colours)."""
    cmap = class_colormap(n_classes)
    return ["#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in cmap(i)[:3])) for i in range(n_classes)]


def labels_png(labels: Tensor, colors: list[str]) -> bytes:
    """A predicted label map ``(H, W)`` coloured by class."""
    table = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors], dtype=np.uint8)
    return png(table[labels.cpu().numpy()])


def encode_bytes(values: Tensor) -> str:
    """Base64 of the uint8 bytes of a map ``(H, W)`` in [0, 1], row-major."""
    return base64.b64encode(to_bytes(values).cpu().numpy().tobytes()).decode()


def encode_labels(labels: Tensor) -> str | None:
    """Base64 of a label map ``(H, W)``, one byte per pixel; ``None`` beyond 256 classes (the
    page then reads the classes from the coloured label PNG)."""
    if int(labels.max()) > 255:
        return None
    return base64.b64encode(labels.to(torch.uint8).cpu().numpy().tobytes()).decode()


def heat_colors() -> list[str]:
    """The 256 colours of segcam's heatmap colour map (the figures' ``inferno``) as ``#rrggbb``."""
    cmap = colormaps[HEATMAP_CMAP]
    return ["#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in cmap(i / 255)[:3])) for i in range(256)]
