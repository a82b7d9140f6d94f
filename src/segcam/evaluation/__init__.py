"""Evaluation: how good a model is and how good an explanation is.

``metrics`` — confusion, IoU, Dice, mIoU of a model on synthetic scenes (an accumulator for
batches); ``evidence`` — a heatmap's mass on evidence whose truth is known.  The coming
evaluation suite (masking test, faithfulness curves, sanity checks) lives here too.
"""

from .evidence import EVIDENCE_KEYS, evidence_score
from .metrics import SegmentationScores, confusion, dice, evaluate_model, iou_from_confusion, region_dice

__all__ = [
           "EVIDENCE_KEYS",
           "SegmentationScores",
           "confusion",
           "dice",
           "evaluate_model",
           "evidence_score",
           "iou_from_confusion",
           "region_dice",
]
