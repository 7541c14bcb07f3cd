"""Depth decoders of the Monodepth2 family."""
from surround_depth_train.models.decoders.conv import ConvBlock, Conv3x3, disparity_to_depth, upsample_to
from surround_depth_train.models.decoders.hrdepth import HRDepthDecoder
from surround_depth_train.models.decoders.monodepth2 import DecoderOutput, Monodepth2Decoder

__all__ = ['Monodepth2Decoder', 'HRDepthDecoder', 'DecoderOutput', 'ConvBlock', 'Conv3x3', 'upsample_to',
           'disparity_to_depth']
