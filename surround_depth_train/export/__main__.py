"""``python -m surround_depth_train.export``: a model file -> ``student.onnx`` + ``student.onnx.json``.

    python -m surround_depth_train.export --model runs/x/model.pt --output student.onnx
        [--outputs depth,confidence,centers,probs] [--opset 17] [--max-batch 6] [--tolerance 1e-3]
        [--allow-teacher]
"""
from __future__ import annotations

import argparse
import sys

from surround_depth_train.command_line import prog
from surround_depth_train.config import ConfigError
from surround_depth_train.export.onnx_export import DEFAULT_MAX_BATCH, MIN_OPSET, ExportError, export_onnx
from surround_depth_train.export.sidecar import OUTPUT_NAMES
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
    args = parser.parse_args(argv)
    try:
        check_output_file(args.output, '--output')
        export_onnx(args.model, args.output, outputs=args.outputs.split(','), opset=args.opset,
                    max_batch=args.max_batch, allow_teacher=args.allow_teacher, tolerance=args.tolerance)
    except (ExportError, ModelFileError, FileNotFoundError, ConfigError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
