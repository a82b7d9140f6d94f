"""Evaluation: how good a model is, and how good an explanation is.

In the order data flows:

* ``metrics`` — confusion, IoU, Dice, mIoU of a model (pure functions + an accumulator);
* ``perturb`` / ``subject`` — running a model on many modified copies of one image, in chunks;
* ``evidence`` — a map's mass on evidence whose truth is known, and the pointing game;
* ``masking`` — the Seg-XRes-CAM paper's masking test (threshold, dilation) and its sweep;
* ``faithfulness`` — deletion and insertion curves of the region score, probability and Dice;
* ``similarity`` — Spearman (ties averaged), Pearson and SSIM between two maps;
* ``sanity`` — Adebayo et al.'s cascading randomisation and label randomisation;
* ``stats`` — bootstrap intervals and paired sign-flip tests;
* ``cases`` → ``scoring`` → ``benchmark`` → ``summary`` — the scored benchmark: what is
  explained, every measurement of one map, the run over methods × layers × cases, and the
  tables and the papers' claims as paired tests.

A new metric is a column of :func:`~segcam.evaluation.scoring.score_explanation` (and, to show it
in the reports, an entry of :data:`~segcam.evaluation.summary.METRICS`).
"""

from .benchmark import BenchmarkConfig, BenchmarkResult, Candidate, benchmark_layers, candidates, run_benchmark
from .cases import Case, ImageCases, image_cases, scene_cases
from .evidence import EVIDENCE_KEYS, evidence_score, pointing_game
from .faithfulness import FaithfulnessCurve, deletion_curve, insertion_curve
from .masking import MaskingResult, SufficiencyCurve, masking_test, sufficiency_curve
from .metrics import SegmentationScores, confusion, dice, evaluate_model, iou_from_confusion, region_dice
from .perturb import keep_mask, masked_images, predict_batches
from .sanity import LabelRandomisation, SanityResult, SanityStep, cascading_randomisation, label_randomisation
from .scoring import Scoring, score_explanation
from .similarity import pearson, rankdata, spearman, ssim
from .stats import Interval, PairedComparison, bootstrap_mean, paired_comparison
from .summary import METRICS, Claim, check_claims, metric_name, paper_claims, summarise

__all__ = [
           "EVIDENCE_KEYS",
           "METRICS",
           "BenchmarkConfig",
           "BenchmarkResult",
           "Candidate",
           "Case",
           "Claim",
           "FaithfulnessCurve",
           "ImageCases",
           "Interval",
           "LabelRandomisation",
           "MaskingResult",
           "PairedComparison",
           "SanityResult",
           "SanityStep",
           "Scoring",
           "SegmentationScores",
           "SufficiencyCurve",
           "benchmark_layers",
           "bootstrap_mean",
           "candidates",
           "cascading_randomisation",
           "check_claims",
           "confusion",
           "deletion_curve",
           "dice",
           "evaluate_model",
           "evidence_score",
           "image_cases",
           "insertion_curve",
           "iou_from_confusion",
           "keep_mask",
           "label_randomisation",
           "masked_images",
           "masking_test",
           "metric_name",
           "paired_comparison",
           "paper_claims",
           "pearson",
           "pointing_game",
           "predict_batches",
           "rankdata",
           "region_dice",
           "run_benchmark",
           "scene_cases",
           "score_explanation",
           "spearman",
           "ssim",
           "sufficiency_curve",
           "summarise",
]
