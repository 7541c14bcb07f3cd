"""``python -m surround_depth_train.export``: a model file -> ``student.onnx`` + ``student.onnx.json``.

    python -m surround_depth_train.export --model runs/x/model.pt --output student.onnx
        [--outputs depth,confidence,centers,probs] [--opset 17] [--max-batch 6] [--tolerance 1e-3]
        [--allow-teacher] [--bins-downsample 1|2|4]
        [--int8 [--calibration-split train] [--calibration-samples 8] [--check-samples 2]
                [--calibration-method minmax|percentile|entropy] [--int8-tolerance 0.05] [--keep-fp32 REGEX,...]
                [data.key=value ...]]

``--int8`` writes a statically quantised graph (QDQ, int8 weights per channel, :mod:`.int8`) calibrated on camera
sets of SurroundSim's train split at the model's input size, or of the dataset the ``data.*`` overrides describe
(``data.dataset=rosbag data.root=drive.mcap`` for a user's own recording); the sidecar records them.

``--bins-downsample 2`` (or 4) bakes a cheaper MetricBins head into the graph: depth computed at half (a quarter)
of the input resolution and upsampled bilinearly (:class:`~surround_depth_train.models.bins.MetricBins`); the
sidecar records it and the node's ``bins_downsample`` parameter must say the same.
"""
from __future__ import annotations

import argparse
import sys

from surround_depth_train.command_line import prog
from surround_depth_train.config import ConfigError
from surround_depth_train.export.calibration import CALIBRATION_SPLITS
from surround_depth_train.export.int8 import CALIBRATION_METHODS, KEEP_FP32
from surround_depth_train.export.onnx_export import DEFAULT_MAX_BATCH, MIN_OPSET, ExportError, export_onnx
from surround_depth_train.export.sidecar import OUTPUT_NAMES
from surround_depth_train.models.bins import BINS_DOWNSAMPLES
from surround_depth_train.models.modelfile import ModelFileError
from surround_depth_train.output_path import check_output_file

__all__ = ['main']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog('surround_depth_train.export'),
        description='Export a model file to ONNX (dynamic batch, the model file\'s input size), check it against '
                    'PyTorch with ONNX Runtime, and write the sidecar the node reads (<output>.json).')
    parser.add_argument('--model', required=True, help='model file (save_model) or training checkpoint')
    parser.add_argument('--output', required=True, help='the .onnx file to write (its sidecar goes beside it)')
    parser.add_argument('--outputs', default='depth',
                        help=f'comma-separated graph outputs out of {",".join(OUTPUT_NAMES)} (default depth; '
                             f'confidence, centers and probs need a bins head)')
    parser.add_argument('--opset', type=int, default=MIN_OPSET, help=f'ONNX opset (>= {MIN_OPSET}, default '
                                                                      f'{MIN_OPSET})')
    parser.add_argument('--max-batch', type=int, default=DEFAULT_MAX_BATCH,
                        help=f'largest batch (camera images per forward pass) checked and allowed (default '
                             f'{DEFAULT_MAX_BATCH})')
    parser.add_argument('--tolerance', type=float, default=1e-3,
                        help='largest error of the ONNX Runtime vs PyTorch check (relative for depth, absolute for '
                             'probabilities and confidence; default 1e-3)')
    parser.add_argument('--allow-teacher', action='store_true', help='export a teacher model file anyway')
    parser.add_argument('--bins-downsample', type=int, default=1, choices=BINS_DOWNSAMPLES,
                        help='compute the MetricBins depth at 1/N of the input resolution and upsample it '
                             '(default 1: full resolution)')
    int8 = parser.add_argument_group('int8', 'static int8 quantisation (QDQ, per-channel weights)')
    int8.add_argument('--int8', action='store_true', help='write an int8 graph calibrated on camera sets')
    int8.add_argument('--calibration-split', default='train', choices=CALIBRATION_SPLITS,
                      help='split the calibration and check camera sets come from (default train)')
    int8.add_argument('--calibration-samples', type=int, default=8, help='camera sets to calibrate on (default 8)')
    int8.add_argument('--check-samples', type=int, default=2,
                      help='further camera sets on which int8 is compared with fp32 (default 2)')
    int8.add_argument('--calibration-method', default='minmax', choices=CALIBRATION_METHODS,
                      help='activation range estimate (default minmax; percentile: measured a little closer to '
                           'fp32, twice the calibration time)')
    int8.add_argument('--int8-tolerance', type=float, default=0.05,
                      help='largest median relative depth difference of int8 against fp32 (default 0.05)')
    int8.add_argument('--keep-fp32', default=','.join(KEEP_FP32),
                      help='comma-separated regular expressions of graph node names that stay fp32 (default: the '
                           'bins head, the disparity convolution and depthwise convolutions)')
    int8.add_argument('overrides', nargs='*', metavar='data.key=value',
                      help='the calibration dataset (default SurroundSim; e.g. data.dataset=rosbag data.root=BAG)')
    args = parser.parse_args(argv)
    if args.overrides and not args.int8:
        parser.error(f'{args.overrides[0]}: data.* overrides choose the int8 calibration data; add --int8')
    try:
        check_output_file(args.output, '--output')
        outputs = args.outputs.split(',')
        if args.int8:
            from surround_depth_train.export.calibration import calibration_from_dataset
            from surround_depth_train.export.int8 import export_int8
            from surround_depth_train.models.modelfile import ModelInfo, read_model_file

            info = ModelInfo.from_file_dict(read_model_file(args.model))
            calibration = calibration_from_dataset(args.overrides, input_size=info.input_size,
                                                   split=args.calibration_split, samples=args.calibration_samples,
                                                   check_samples=args.check_samples)
            export_int8(args.model, args.output, calibration, outputs=outputs, opset=args.opset,
                        max_batch=args.max_batch, allow_teacher=args.allow_teacher, tolerance=args.tolerance,
                        int8_tolerance=args.int8_tolerance, method=args.calibration_method,
                        keep_fp32=[p for p in args.keep_fp32.split(',') if p], bins_downsample=args.bins_downsample)
        else:
            export_onnx(args.model, args.output, outputs=outputs, opset=args.opset,
                        max_batch=args.max_batch, allow_teacher=args.allow_teacher, tolerance=args.tolerance,
                        bins_downsample=args.bins_downsample)
    except (ExportError, ModelFileError, FileNotFoundError, ConfigError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
