"""Losses on plain tensors, all computed in fp32: supervision, the paper's CKD and VRKD, and the KD baselines."""
from surround_depth_train.losses.ckd import ckd_loss, cross_depth
from surround_depth_train.losses.depth import (DEPTH_LOSSES, DepthLoss, depth_loss_by_name, l1_loss, silog_loss,
                                               valid_pixels)
from surround_depth_train.losses.feature_kd import FitNetsLoss, at_loss, attention_map, similarity_matrix, sp_loss
from surround_depth_train.losses.output_kd import output_kd_loss
from surround_depth_train.losses.total import DISTILLATION_TERMS, FEATURE_TERMS, DistillationWeights, combine_losses
from surround_depth_train.losses.vrkd import (VRKD_REDUCTIONS, adjacent_pairs, normalise_by_mean_distance,
                                              view_distances, view_relations, vrkd_loss)

__all__ = [
    'DepthLoss', 'DEPTH_LOSSES', 'silog_loss', 'l1_loss', 'depth_loss_by_name', 'valid_pixels',
    'ckd_loss', 'cross_depth',
    'VRKD_REDUCTIONS', 'adjacent_pairs', 'view_distances', 'normalise_by_mean_distance', 'view_relations',
    'vrkd_loss',
    'output_kd_loss', 'FitNetsLoss', 'at_loss', 'attention_map', 'sp_loss', 'similarity_matrix',
    'DistillationWeights', 'combine_losses', 'DISTILLATION_TERMS', 'FEATURE_TERMS',
]
