"""Pictures of explanations: heatmap overlays with a perceptually uniform colormap, figure rows
and grids with legends, a gallery of synthetic scenes.

``overlay``: arrays to arrays (:func:`display_image`, :func:`to_2d`, :func:`overlay`, …).
``figures``: files (:func:`save_overlay`, :func:`save_rows`, :func:`save_grid`,
:func:`save_scene_gallery`); ``curves``: the evaluation suite's plots (:func:`save_curves`,
:func:`save_sanity`).  Everything is drawn with matplotlib's object-oriented API: no pyplot, no backend
switch, no other global state, so it works in notebooks, web back ends and several threads at
once.  3-D inputs are shown as the slice through the middle of the region.
"""

from __future__ import annotations

from .curves import mean_curves, save_curves, save_sanity
from .figures import EVIDENCE_COLOURS, Row, save_grid, save_overlay, save_rows, save_scene_gallery
from .overlay import HEATMAP_CMAP, centre_slice, class_colormap, display_image, overlay, to_2d

__all__ = [
    "EVIDENCE_COLOURS",
    "HEATMAP_CMAP",
    "Row",
    "centre_slice",
    "class_colormap",
    "display_image",
    "mean_curves",
    "overlay",
    "save_curves",
    "save_grid",
    "save_overlay",
    "save_rows",
    "save_sanity",
    "save_scene_gallery",
    "to_2d",
]
