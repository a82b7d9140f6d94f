"""Bridges to other explanation libraries: :func:`as_classifier` turns a segmentation model into
a classifier of region scores, so captum's (or any classifier library's) explainers apply."""

from .captum import SegmentationClassifier, as_classifier

__all__ = ["SegmentationClassifier", "as_classifier"]
