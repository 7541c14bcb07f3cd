"""The sidecar of an exported ONNX model: everything a runtime needs besides the graph, in ``<model>.onnx.json``.

An ONNX graph holds the weights and the operations but not what the model file says about them: the input size it
was traced at, the normalisation inside it, the depth range, the bins head, the training rig (the cameras whose
focal lengths give the metric scale) and whether it is a teacher. The sidecar carries those, plus the SHA-256 of
the ``.onnx`` file it was written for, so a runtime detects a sidecar that belongs to another export.

=================  ==================================================================================
key                value
=================  ==================================================================================
``format``         ``'surround_depth_onnx'``
``format_version`` :data:`SIDECAR_VERSION`
``onnx_sha256``    hex SHA-256 of the ``.onnx`` file
``input``          the graph's input name (``'images'``: ``[B, 3, H, W]`` float RGB in ``[0, 1]``)
``input_size``     ``[H, W]`` (fixed in the graph; the batch is dynamic within ``batch``)
``batch``          ``[1, max]`` camera images per forward pass the export was checked for
``outputs``        output names in graph order, out of ``depth``, ``confidence``, ``centers``, ``probs``
``opset``          the ONNX opset
``model``          the model file's :class:`~surround_depth_train.models.modelfile.ModelInfo` as a dict: name,
                   kwargs, input size, normalisation (inside the graph), depth range, head, training rig (None
                   before model file format 2), format version, teacher or not
``precision``      ``'fp32'``, or ``'int8'`` for ``export --int8`` (absent in older sidecars: fp32)
``int8``           int8 only: format (QDQ), weight / activation types, calibration method, quantised
                   operations, what stayed fp32, and the int8 vs fp32 check on held-out camera sets
``calibration``    int8 only: the dataset, split, overrides, image size and camera sets it was calibrated on
``parity``         the fp32 graph's self-check: largest errors against PyTorch, per output
``source``         the model file's path and SHA-256, the exporting library versions
=================  ==================================================================================
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from surround_depth_train.atomic import atomic_write

__all__ = ['SIDECAR_FORMAT', 'SIDECAR_VERSION', 'OUTPUT_NAMES', 'SidecarError', 'sidecar_path', 'file_sha256',
           'write_sidecar', 'read_sidecar', 'jsonable']

SIDECAR_FORMAT = 'surround_depth_onnx'
SIDECAR_VERSION = 1
OUTPUT_NAMES = ('depth', 'confidence', 'centers', 'probs')  # the canonical order of the graph's outputs
REQUIRED_KEYS = ('onnx_sha256', 'input', 'input_size', 'batch', 'outputs', 'model')


class SidecarError(ValueError):
    """An ONNX file's sidecar is missing, unreadable or belongs to another export; the message says to re-export."""


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """``student.onnx`` -> ``student.onnx.json``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + '.json')


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def jsonable(obj: Any) -> Any:
    """Model file values (tensors, numpy arrays and scalars, tuples) as JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, 'tolist'):  # torch.Tensor, numpy arrays and numpy scalars
        return obj.tolist()
    return obj


def _reexport_hint(onnx_path: Path) -> str:
    return (f'export it again, which writes both files: python -m surround_depth_train.export --model MODEL_FILE '
            f'--output {onnx_path}')


def write_sidecar(onnx_path: str | os.PathLike, fields: Mapping[str, Any]) -> Path:
    """Write ``<onnx_path>.json`` (atomically) for the ``.onnx`` file as it is now on disk."""
    onnx_path = Path(onnx_path)
    body = {'format': SIDECAR_FORMAT, 'format_version': SIDECAR_VERSION, 'onnx_sha256': file_sha256(onnx_path),
            **jsonable(dict(fields))}
    missing = [k for k in REQUIRED_KEYS if k not in body]
    if missing:
        raise ValueError(f'sidecar fields missing: {missing}')
    path = sidecar_path(onnx_path)
    with atomic_write(path, 'w') as f:
        json.dump(body, f, indent=2)
        f.write('\n')
    return path


def read_sidecar(onnx_path: str | os.PathLike, verify_hash: bool = True) -> dict[str, Any]:
    """The sidecar of ``onnx_path``, checked for format and (``verify_hash``) that it was written for this file.

    Raises:
        FileNotFoundError: no ``.onnx`` file.
        SidecarError: no sidecar, not a sidecar, a newer version, missing keys or another file's hash.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f'no ONNX file at {onnx_path}')
    path = sidecar_path(onnx_path)
    if not path.is_file():
        raise SidecarError(f'{onnx_path} has no sidecar {path.name} beside it; the sidecar carries the input size, '
                           f'depth range and training rig the runtime needs: {_reexport_hint(onnx_path)}')
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SidecarError(f'{path} is not readable JSON ({exc}); {_reexport_hint(onnx_path)}') from None
    if not isinstance(body, dict) or body.get('format') != SIDECAR_FORMAT:
        raise SidecarError(f'{path} is not a surround-depth ONNX sidecar (no format={SIDECAR_FORMAT!r}); '
                           f'{_reexport_hint(onnx_path)}')
    version = body.get('format_version')
    if not isinstance(version, int) or version > SIDECAR_VERSION:
        raise SidecarError(f'{path} has sidecar version {version!r}, newer than this code reads ({SIDECAR_VERSION}); '
                           f'update surround_depth_train or {_reexport_hint(onnx_path)}')
    missing = [k for k in REQUIRED_KEYS if k not in body]
    if missing:
        raise SidecarError(f'{path} lacks {missing}; {_reexport_hint(onnx_path)}')
    if verify_hash:
        actual = file_sha256(onnx_path)
        if actual != body['onnx_sha256']:
            raise SidecarError(f'{path.name} was written for another {onnx_path.name} (SHA-256 '
                               f'{body["onnx_sha256"][:12]}..., the file on disk has {actual[:12]}...): the ONNX '
                               f'file was replaced or the sidecar copied from another export; '
                               f'{_reexport_hint(onnx_path)}')
    return body
