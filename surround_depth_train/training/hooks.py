"""Trainer hooks: TensorBoard logging, periodic validation (numbers + a depth mosaic), periodic checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from surround_depth_train.metrics import format_metrics
from surround_depth_train.training.trainer import Hook, Trainer, write_json
from surround_depth_train.visualize import colorize_depth, label, mosaic, save_png

__all__ = ['TensorBoardHook', 'ValidationHook', 'CheckpointHook']


class TensorBoardHook(Hook):
    """Scalars (each loss term, lr, skipped steps) every ``log_every`` steps, on the main process."""

    def __init__(self, log_dir: Path, log_every: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.log_every = max(1, log_every)

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        step = trainer.state.global_step
        if step % self.log_every == 0 or step == 1:
            for k, v in logs.items():
                self.writer.add_scalar(f'train/{k}', v, step)

    def log_validation(self, summary: dict, picture: np.ndarray | None) -> None:
        step = summary['step']
        if summary['mean'] is not None:
            for k, v in summary['mean'].items():
                self.writer.add_scalar(f'val/{k}', v, step)
        if picture is not None:
            self.writer.add_image('val/depth', picture, step, dataformats='HWC')
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        self.writer.close()


def validation_picture(images, depth, min_depth: float, max_depth: float, names) -> np.ndarray:
    """Two rows per camera set: the six images, then the predicted depth (inverse-depth colours)."""
    imgs = [(np.clip(im.permute(1, 2, 0).numpy(), 0, 1) * 255).astype(np.uint8) for im in images]
    deps = [label(colorize_depth(d[0].numpy(), min_depth, max_depth), n) for d, n in zip(depth, names)]
    return mosaic([imgs, deps])


class ValidationHook(Hook):
    """Validates every ``every`` steps (0 = each epoch end) and at the end; writes metrics JSON and a PNG."""

    def __init__(self, every: int, out_dir: Path, tensorboard: TensorBoardHook | None = None):
        self.every, self.out_dir, self.tb = every, Path(out_dir), tensorboard

    def _run(self, trainer: Trainer) -> None:
        if not trainer.ctx.is_main:
            return
        summary = trainer.validate()
        preview = summary.pop('_preview', None)
        picture = None
        if preview is not None:
            picture = validation_picture(*preview, trainer.val_set.min_depth, trainer.val_set.max_depth,
                                         trainer.camera_names)
            save_png(self.out_dir / 'val_depth.png', picture)
        write_json(self.out_dir / 'val_metrics.json', summary)
        self._append_history(summary)
        if self.tb is not None:
            self.tb.log_validation(summary, picture)
        from tqdm import tqdm

        tqdm.write(f'[val step {summary["step"]}] {format_metrics(summary["mean"])}')

    def _append_history(self, summary: dict) -> None:
        """``val_history.json``: the mean metrics of every validation so far (a resumed run replaces the steps it
        repeats), the curve that shows whether training has flattened."""
        path = self.out_dir / 'val_history.json'
        try:
            history = json.loads(path.read_text())
        except (OSError, ValueError):
            history = []
        history = [h for h in history if isinstance(h, dict) and h.get('step', -1) < summary['step']]
        history.append({'step': summary['step'], 'mean': summary['mean']})
        write_json(path, history)

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.every and trainer.state.global_step % self.every == 0:
            self._run(trainer)

    def on_epoch_end(self, trainer: Trainer) -> None:
        if not self.every:
            self._run(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        if not trainer.stopped_early and (trainer.last_val is None
                                          or trainer.last_val['step'] != trainer.state.global_step):
            self._run(trainer)


class CheckpointHook(Hook):
    """``checkpoints/last.pt`` every ``every`` steps (0 = each epoch end), when stopped early, and at the end; at the
    end of a finished run also ``model.pt``, the deployable model file (no training state)."""

    def __init__(self, every: int):
        self.every = every

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if (self.every and trainer.state.global_step % self.every == 0) or (
                trainer.stop_after_steps and trainer.state.global_step >= trainer.stop_after_steps):
            trainer.save_checkpoint()

    def on_epoch_end(self, trainer: Trainer) -> None:
        trainer.save_checkpoint()

    def on_train_end(self, trainer: Trainer) -> None:
        trainer.save_checkpoint()
        if not trainer.stopped_early:
            trainer.save_model_file(trainer.out_dir / 'model.pt')
