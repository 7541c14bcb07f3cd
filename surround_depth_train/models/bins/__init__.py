"""The metric bins head (ZoeDepth's MetricBins) and its parts, one idea per module.

- ``seed``: seed bin regressor and projector (bottleneck -> first centers and embedding);
- ``attractor``: attractor layers that refine centers stage by stage;
- ``log_binomial``: the conditional log-binomial output distribution;
- ``head``: ``MetricBins``, ``BinsOutput`` and ``resize_bins``;
- ``banded``: the inference path (no autograd), the same function computed image by image in cache-sized bands;
- ``confidence``: per-pixel confidence ``1 - H(P) / log K`` from the bin probabilities;
- ``pixelwise``: the channels-last layout the head computes in;
- ``adabins``, ``localbins``: the Table IV alternatives (AdaBins: one set of bins per image from a mini-ViT;
  LocalBins: per-pixel bins split at every stage of its own decoder), with MetricBins' call signature and output;
  LocalBins' parts: ``upsample_block`` (its decoder block) and ``splitting`` (seed widths, bin splitter).
"""
from surround_depth_train.models.bins.adabins import AdaBins
from surround_depth_train.models.bins.attractor import AttractorLayer, exponential_attraction, inverse_attraction
from surround_depth_train.models.bins.confidence import bin_confidence
from surround_depth_train.models.bins.head import (BIN_CENTERS_TYPES, BINS_DOWNSAMPLES, BinsOutput, MetricBins,
                                                  expected_depth, resize_bins, set_bins_downsample)
from surround_depth_train.models.bins.localbins import LocalBins
from surround_depth_train.models.bins.log_binomial import (ConditionalLogBinomial, LogBinomial, log_binomial_coefficient,
                                                          softplus_inference)
from surround_depth_train.models.bins.seed import Projector, SeedBinRegressor

__all__ = ['BinsOutput', 'MetricBins', 'resize_bins', 'expected_depth', 'bin_confidence', 'BIN_CENTERS_TYPES',
           'BINS_DOWNSAMPLES', 'set_bins_downsample',
           'AttractorLayer', 'inverse_attraction', 'exponential_attraction', 'ConditionalLogBinomial', 'LogBinomial',
           'log_binomial_coefficient', 'softplus_inference', 'Projector', 'SeedBinRegressor', 'AdaBins', 'LocalBins']
