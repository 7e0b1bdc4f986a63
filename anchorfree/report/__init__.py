"""Self-contained HTML reports (jinja2 templates, matplotlib plots, images embedded as data URIs).

* :func:`write_run_report`: a run folder's config, COCO metrics, training curves, per-class
  precision–recall curves, confusion matrix and a worst-images-first gallery;
* :func:`write_compare_report`: the table and the accuracy-vs-speed plot of ``bench compare``;
* :func:`write_dataset_report`: images with their boxes, class counts, box sizes and aspect ratios.

The pages fetch nothing from the network and run no scripts: they open from disk and can be
moved or mailed as one file.
"""
from anchorfree.report.compare import write_compare_report
from anchorfree.report.curves import PRCurve, mean_pr_curve, per_class_ap_by_area, pr_curves
from anchorfree.report.dataset import SplitStatistics, split_statistics, write_dataset_report
from anchorfree.report.matching import (
    ImageBoxes,
    ImageErrors,
    ImageMatch,
    MatchResult,
    detections_from_coco,
    ground_truth_of,
    match_dataset,
    match_image,
    worst_first,
)
from anchorfree.report.run import write_run_report

__all__ = [
    "ImageBoxes",
    "ImageErrors",
    "ImageMatch",
    "MatchResult",
    "PRCurve",
    "SplitStatistics",
    "detections_from_coco",
    "ground_truth_of",
    "match_dataset",
    "match_image",
    "mean_pr_curve",
    "per_class_ap_by_area",
    "pr_curves",
    "split_statistics",
    "worst_first",
    "write_compare_report",
    "write_dataset_report",
    "write_run_report",
]
