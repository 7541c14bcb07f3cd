"""The training loop: a plain loop over resumable sharded batches, with hooks for logging, validation and saving.

One step: forward the task under autocast (losses in fp32), refuse a non-finite loss (skip the step on every rank
and count it; too many in a row stop the run with the last good checkpoint), backward, unscale, clip, optimiser
and scheduler step. ``epoch``/``batch_in_epoch`` always point at the next batch to train, so a checkpoint written
at any step resumes exactly where it was taken.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from surround_depth_train.atomic import atomic_write
from surround_depth_train.config import ConfigError
from surround_depth_train.data import collate_surround
from surround_depth_train.distill import DistillationTask, flatten_cameras
from surround_depth_train.metrics import MetricsAccumulator
from surround_depth_train.models.modelfile import save_model
from surround_depth_train.training.checkpoint import load_training_state, save_training_checkpoint
from surround_depth_train.training.rng import restore_rng_state
from surround_depth_train.training.distributed import DistributedContext, any_across_ranks
from surround_depth_train.training.sampler import AugmentedView, ShardedResumableSampler

__all__ = ['Trainer', 'Hook', 'NonFiniteLossError', 'TrainState', 'freeze_batchnorm', 'move_to']


PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses; the message names the last good checkpoint."""


@dataclass
class TrainState:
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    nonfinite_total: int = 0
    nonfinite_streak: int = 0


class Hook:
    """Override what you need; the trainer calls these on the main process and on the others alike."""

    def on_step_end(self, trainer: 'Trainer', logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: 'Trainer') -> None: ...

    def on_train_end(self, trainer: 'Trainer') -> None: ...


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm in eval mode (running statistics), keeping its affine parameters trainable."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def move_to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """Runs a :class:`DistillationTask` over a dataset. See :mod:`surround_depth_train.train` for the CLI.

    Args:
        task: the distillation task (student side, frozen teacher, loss weights).
        ctx: the process group context (rank, world size, device).
        model_name, model_kwargs: registry name and kwargs of the trained model (stored in checkpoints).
        input_size: ``(height, width)`` the model trains at (stored in checkpoints).
        train_set, val_set: datasets of camera-set samples.
        optimizer, scheduler: as built by :mod:`surround_depth_train.training.builders`.
        out_dir: where checkpoints, metrics and pictures go.
        epochs, batch_size, seed: the trajectory (``batch_size`` camera sets per step and per process).
        precision: ``'fp32'``, ``'bf16'`` or ``'fp16'`` autocast (losses stay fp32).
        grad_clip: max gradient norm; 0 disables clipping.
        max_nonfinite: consecutive non-finite losses before the run stops.
        freeze_bn: keep BatchNorm in eval mode (running statistics).
        num_workers: data loader processes.
        stop_after_steps: stop as if interrupted after this many steps (0 = never).
        augment: ``augment(sample, seed)`` or None.
        teacher_cache: a :class:`TeacherCache` or None.
        hooks: called after each step, epoch and at the end.
        camera_names: for per-camera metrics and pictures.
        config: the resolved run config as a plain mapping, saved into checkpoints (``--resume`` compares it).
    """

    def __init__(self, *, task: DistillationTask, ctx: DistributedContext, model_name: str, model_kwargs: dict,
                 input_size: tuple[int, int], train_set, val_set, optimizer: torch.optim.Optimizer, scheduler,
                 out_dir: str | Path, epochs: int, batch_size: int, seed: int, precision: str = 'fp32',
                 grad_clip: float = 0.0, max_nonfinite: int = 5, freeze_bn: bool = False, num_workers: int = 0,
                 stop_after_steps: int = 0, augment: Callable[[dict, int], dict] | None = None,
                 teacher_cache=None, hooks: Sequence[Hook] = (), camera_names: Sequence[str] = (),
                 config: dict | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {sorted(PRECISIONS)}, got {precision!r}')
        self.ctx, self.task = ctx, task
        self.model_name, self.model_kwargs = model_name, model_kwargs
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.train_set, self.val_set = train_set, val_set
        self.teacher_cache = teacher_cache
        self.optimizer, self.scheduler = optimizer, scheduler
        self.epochs, self.batch_size, self.seed = int(epochs), int(batch_size), int(seed)
        self.grad_clip, self.max_nonfinite = float(grad_clip), int(max_nonfinite)
        self.freeze_bn, self.num_workers = bool(freeze_bn), int(num_workers)
        self.stop_after_steps = int(stop_after_steps)
        self.config = dict(config or {})
        self.hooks = list(hooks)
        self.camera_names = list(camera_names)
        self.state = TrainState()
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / 'checkpoints'
        self.sampler = ShardedResumableSampler(len(train_set), self.batch_size, ctx.world_size, ctx.rank,
                                               shuffle=True, seed=self.seed)
        self.train_view = AugmentedView(train_set, augment)
        self.amp_dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == 'fp16')
        self.stopped_early = False
        self.last_val: dict | None = None
        self._wall_before, self._fit_started = 0.0, None

    # ---- state -------------------------------------------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        return self.sampler.batches_per_epoch

    @property
    def total_steps(self) -> int:
        return self.batches_per_epoch * self.epochs

    def _aux_state(self) -> dict:
        fit = self.task.student_side.fitnets
        aux = {'wall_s': self.wall_s}
        return aux | ({'fitnets': fit.state_dict()} if fit is not None else {})

    @property
    def wall_s(self) -> float:
        """Seconds spent training this run, summed over every resumed part (up to its last checkpoint each)."""
        running = 0.0 if self._fit_started is None else time.perf_counter() - self._fit_started
        return self._wall_before + running

    def _model_info(self) -> dict[str, Any]:
        """What a model file records besides the weights (both :meth:`save_checkpoint` and :meth:`save_model_file`)."""
        return dict(name=self.model_name, kwargs=self.model_kwargs, input_size=self.input_size,
                    training_rig=getattr(self.train_set, 'rig', None))

    def save_checkpoint(self, path: Path | None = None) -> Path:
        path = path or self.ckpt_dir / 'last.pt'
        if self.ctx.is_main:
            save_training_checkpoint(
                path, model=self.task.student, optimizer=self.optimizer, scheduler=self.scheduler,
                scaler=self.scaler, epoch=self.state.epoch, batch_in_epoch=self.state.batch_in_epoch,
                global_step=self.state.global_step, nonfinite=self.state.nonfinite_total,
                aux_state=self._aux_state(), config=self.config, **self._model_info())
        return path

    def save_model_file(self, path: Path) -> Path:
        """The deployable model file at ``path`` (atomically): weights, model info and training rig, without the
        training state that ``checkpoints/last.pt`` keeps."""
        if self.ctx.is_main:
            save_model(path, self.task.student, **self._model_info())
        return path

    def resume(self, path: Path, data: dict | None = None) -> None:
        """Continue from the training checkpoint at ``path`` (``data``: its contents, when already read)."""
        data = load_training_state(path) if data is None else data
        if data['name'] != self.model_name:
            raise ConfigError(f'--resume: {path} holds a {data["name"]!r} model but the config trains '
                              f'{self.model_name!r}; resume with the config of that run (its config.yaml)')
        self.task.student.load_state_dict(data['state_dict'])
        fit = self.task.student_side.fitnets
        if fit is not None and 'fitnets' in data['aux_state']:
            fit.load_state_dict(data['aux_state']['fitnets'])
        self.optimizer.load_state_dict(data['optimizer'])
        if self.scheduler is not None and data.get('scheduler') is not None:
            self.scheduler.load_state_dict(data['scheduler'])
        if data.get('scaler') is not None:
            self.scaler.load_state_dict(data['scaler'])
        restore_rng_state(data['rng'])
        self._wall_before = float(data['aux_state'].get('wall_s', 0.0))
        self.state = TrainState(epoch=data['epoch'], batch_in_epoch=data['batch_in_epoch'],
                                global_step=data['global_step'], nonfinite_total=data['nonfinite'])

    # ---- one step ----------------------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=self.amp_dtype)

    def _teacher_out(self, batch: dict):
        if self.teacher_cache is None or self.task.teacher is None:
            return None
        images = flatten_cameras(batch['image'])
        return self.teacher_cache.get(list(batch['meta']['index']), images, self.task.teacher_outputs,
                                      batch['image'].shape[1])

    def train_step(self, batch: dict) -> dict[str, float] | None:
        """One optimisation step; returns the loss terms, or None when the step was skipped (non-finite)."""
        batch = move_to(batch, self.ctx.device)
        # BatchNorm statistics move in the forward pass: keep them to undo a skipped step
        buffers = [b.detach().clone() for b in self.task.student_side.buffers()]
        with self._autocast():
            teacher_out = self._teacher_out(batch)
            losses = self.task(batch, teacher_out)
        loss = losses['loss']
        bad = any_across_ranks(not bool(torch.isfinite(loss)), self.ctx)
        if not bad:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g['params']]
            if self.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
            bad = self.amp_dtype != torch.float16 and any_across_ranks(not bool(torch.isfinite(norm)), self.ctx)
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for b, saved in zip(self.task.student_side.buffers(), buffers):
                    b.copy_(saved)
            self.state.nonfinite_total += 1
            self.state.nonfinite_streak += 1
            if self.state.nonfinite_streak >= self.max_nonfinite:
                path = self.save_checkpoint()
                terms = {k: float(v.detach()) for k, v in losses.items()}
                raise NonFiniteLossError(
                    f'{self.state.nonfinite_streak} non-finite losses in a row at step {self.state.global_step} '
                    f'(loss terms: {terms}); the last good weights are in {path}. Lower optim.lr, use '
                    f'precision=fp32, or check the data for NaN/Inf.')
            return None
        self.state.nonfinite_streak = 0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    # ---- validation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """Metrics of the trainable model on the validation set (main process), per camera and averaged."""
        model = self.task.student
        was_training = model.training
        model.eval()
        acc = MetricsAccumulator(self.camera_names)
        ds = self.val_set
        loader = DataLoader(ds, batch_size=self.batch_size, shuffle=False, collate_fn=collate_surround,
                            num_workers=0)
        first = None
        for batch in loader:
            batch = move_to(batch, self.ctx.device)
            with self._autocast():
                depth = model(flatten_cameras(batch['image']), depth_only=True).depth.float()
            depth = depth.reshape(*batch['image'].shape[:2], *depth.shape[1:])
            acc.add_batch(depth, batch['depth'], ds.min_depth, ds.max_depth, masks=batch['depth_mask'],
                          camera_names=self.camera_names)
            if first is None:
                first = (batch['image'][0].cpu(), depth[0].cpu())
        model.train(was_training)
        if self.freeze_bn:
            freeze_batchnorm(model)
        summary = acc.summary()
        summary['step'] = self.state.global_step
        self.last_val = summary
        if first is not None:
            summary['_preview'] = first
        return summary

    # ---- the loop ----------------------------------------------------------------------------------------
    def _loader(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch, self.state.batch_in_epoch)
        # own generator: creating the iterator must not consume the global RNG (exact resume with dropout)
        gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        return DataLoader(self.train_view, batch_size=self.batch_size, sampler=self.sampler,
                          collate_fn=collate_surround, num_workers=self.num_workers, drop_last=True,
                          generator=gen, persistent_workers=False)

    def fit(self) -> TrainState:
        self._fit_started = time.perf_counter()
        self.task.train()
        if self.freeze_bn:
            freeze_batchnorm(self.task.student)
        while self.state.epoch < self.epochs:
            epoch = self.state.epoch
            loader = self._loader(epoch)
            bar = tqdm(loader, total=len(loader), desc=f'epoch {epoch + 1}/{self.epochs}',
                       disable=not self.ctx.is_main, dynamic_ncols=True, leave=False)
            for batch in bar:
                logs = self.train_step(batch)
                self.state.batch_in_epoch += 1
                self.state.global_step += 1
                if logs is not None:
                    bar.set_postfix(loss=f'{logs["loss"]:.4f}')
                logs = dict(logs or {}, skipped=float(logs is None),
                            lr=self.optimizer.param_groups[0]['lr'], nonfinite=self.state.nonfinite_total)
                for hook in self.hooks:
                    hook.on_step_end(self, logs)
                if self.stop_after_steps and self.state.global_step >= self.stop_after_steps:
                    self.stopped_early = True
                    break
            bar.close()
            if self.stopped_early:
                break
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            for hook in self.hooks:
                hook.on_epoch_end(self)
        for hook in self.hooks:
            hook.on_train_end(self)
        return self.state


def write_json(path: Path, data: Any) -> None:
    with atomic_write(path, 'w') as f:
        json.dump(data, f, indent=2, default=str)
