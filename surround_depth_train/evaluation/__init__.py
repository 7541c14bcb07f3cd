"""Evaluation: the run over a dataset (``runner``), the cross-view consistency measure (``consistency``) and what a
run writes (``report``: the Table I Markdown, JSON, depth mosaics, bird's-eye views). The command is
``python -m surround_depth_train.evaluate``."""
from surround_depth_train.evaluation.consistency import (ConsistencyAccumulator, ConsistencySettings, pair_transform,
                                                         relative_disagreement, view_consistency)
from surround_depth_train.evaluation.report import depth_mosaic, metrics_table, render_markdown, save_bev
from surround_depth_train.evaluation.runner import count_parameters, evaluate_model, measure_latency

__all__ = ['ConsistencyAccumulator', 'ConsistencySettings', 'pair_transform', 'relative_disagreement',
           'view_consistency', 'depth_mosaic', 'metrics_table', 'render_markdown', 'save_bev', 'count_parameters',
           'evaluate_model', 'measure_latency']
