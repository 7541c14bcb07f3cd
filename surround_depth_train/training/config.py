"""The typed training configuration (``config/train/*.yaml`` + ``key=value`` overrides).

The resolved config is saved as ``config.yaml`` next to every run's outputs. Builders read these fields and pass
explicit keyword arguments to models, losses and datasets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from surround_depth_train.config import ConfigError
from surround_depth_train.losses.total import DISTILLATION_TERMS

__all__ = ['DataConfig', 'ModelConfig', 'TeacherConfig', 'LossConfig', 'OptimConfig', 'TrainConfig',
           'check_ranges']


@dataclass
class DataConfig:
    """Which dataset and how it is fed.

    ``image_size`` is the network input ``(width, height)``. ``flip`` / ``color_jitter`` are training
    augmentations; their randomness is drawn per (seed, epoch, sample) so that resuming is exact.
    """

    dataset: Literal['surroundsim', 'nuscenes', 'ddad', 'rosbag'] = 'surroundsim'
    root: str | None = None             # dataset root on disk (nuScenes / DDAD), or a bag / folder of bags (rosbag)
    # nuScenes / DDAD (README "Real datasets"); the test split of both is their official val split
    version: str = 'v1.0-trainval'      # nuScenes table version: v1.0-trainval or v1.0-mini
    train_split: str | None = None      # None = train (nuScenes v1.0-mini: mini_train); or a devkit split name
    val_split: str | None = None        # None = val (nuScenes v1.0-mini: mini_val)
    train_scenes: list[str] | None = None  # keep only these scenes of the train split (e.g. [scene-0061], [000150]; rosbag: bag names)
    val_scenes: list[str] | None = None
    max_depth: float | None = None      # GT range; None = the dataset's (nuScenes 80 m, DDAD 200 m)
    native_depth: bool = True           # val / test samples also carry GT at native resolution (evaluation)
    masks: str | None = None            # DDAD: SurroundDepth's self-occlusion masks (<masks>/<CAM>/<scene>/mask.png)
    depth_root: str | None = None       # DDAD: SurroundDepth's preprocessed depth (<depth_root>/<scene>/depth/<CAM>/)
    topic_map: str | None = None        # rosbag: topic map YAML for bags in other layouts (surround_depth_train/data/rosbag/topic_map.py)
    mask_files: list[str] | None = None  # rosbag: per camera ego-body mask images, rig order (white = keep)
    world: str | None = None            # SurroundSim world YAML (None = the default city)
    image_size: tuple[int, int] = (160, 96)
    train_samples: int = 64             # SurroundSim: samples drawn for the train split
    val_samples: int = 8
    test_samples: int | None = None     # SurroundSim: samples of the held-out test split (None = val_samples)
    # SurroundSim: scene seeds of every split start at this offset inside the split's seed range, so roles (teacher,
    # students, test) draw disjoint blocks of scenes of the same city
    seed_offset: int = 0
    frames_per_scene: int = 4           # SurroundSim: consecutive frames per scene (1 = every sample a new scene)
    lidar_beams: int | None = None      # SurroundSim: LiDAR beams (None = 32, nuScenes-like; 8 = sparser, DDAD-like)
    cache_dir: str | None = None        # SurroundSim render cache
    flip: bool = False
    color_jitter: float = 0.0
    num_workers: int = 0


@dataclass
class ModelConfig:
    name: str = 'monodepth2_mb'
    kwargs: dict[str, Any] = field(default_factory=dict)
    freeze_bn: bool = False             # BatchNorm in eval mode (running stats); required for exact DDP equivalence


@dataclass
class TeacherConfig:
    name: str = 'depth_anything_vits_metric'
    checkpoint: str | None = None       # a local Depth Anything metric / relative checkpoint, or our model file
    kwargs: dict[str, Any] = field(default_factory=dict)
    cache: bool = False                 # cache teacher C and P (fp16) at student resolution; no augmentation
    cache_dir: str | None = None        # default: <out_dir>/teacher_cache


@dataclass
class LossConfig:
    """``L_total = sup * L_sup + ckd * L_ckd + vrkd * L_vrkd (+ baselines)``; a weight of 0 disables a term."""

    depth_loss: Literal['silog', 'l1'] = 'silog'
    sup: float = 1.0
    ckd: float = 0.1
    vrkd: float = 1.0
    vrkd_reduction: Literal['map', 'pixel'] = 'map'
    kd: float = 0.0
    fitnets: float = 0.0
    at: float = 0.0
    sp: float = 0.0
    # FitNets / AT / SP: STUDENT:TEACHER decoder features by name or index, e.g. [d16:refinenet4, d8:refinenet3];
    # empty = each teacher stage with the student feature of the nearest stride (see surround_depth_train.distill)
    feature_pairs: list[str] = field(default_factory=list)
    ckd_mask: Literal['self_mask', 'none'] = 'self_mask'  # L_ckd where the student sees the scene, or everywhere
    teacher_target: Literal['lidar', 'dense'] = 'lidar'  # teacher fine-tuning: LiDAR or dense GT


@dataclass
class OptimConfig:
    """AdamW + OneCycle as ZoeDepth (lr 1.61e-4, weight decay 0.01, pct_start 0.7, div 1, final div 1e4)."""

    lr: float = 1.61e-4
    weight_decay: float = 0.01
    encoder_lr_factor: float = 0.1
    scheduler: Literal['onecycle', 'constant'] = 'onecycle'
    pct_start: float = 0.7
    div_factor: float = 1.0
    final_div_factor: float = 1e4
    grad_clip: float = 0.1              # max gradient norm (ZoeDepth clips at 0.1); 0 disables


@dataclass
class TrainConfig:
    mode: Literal['student', 'teacher'] = 'student'
    out_dir: str = 'runs/default'
    seed: int = 0
    epochs: int = 5
    batch_size: int = 2                 # camera sets per step and per process (each set = six images)
    precision: Literal['fp32', 'bf16', 'fp16'] = 'fp32'
    device: str = 'auto'                # auto = cuda when available
    log_every: int = 10
    val_every: int = 0                  # steps between validations; 0 = at the end of each epoch
    checkpoint_every: int = 0           # steps between checkpoints; 0 = at the end of each epoch
    max_nonfinite: int = 5              # consecutive non-finite losses before the run stops
    stop_after_steps: int = 0           # stop (as if interrupted) after this many steps; 0 = never
    tensorboard: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        check_ranges(self)

    @property
    def needs_teacher(self) -> bool:
        """Whether the teacher must run: student mode with any distillation term."""
        return self.mode == 'student' and any(getattr(self.loss, n) > 0 for n in DISTILLATION_TERMS)


#: The smallest valid value of every bounded number (``None``, where a key allows it, means unset); ``(low, True)``:
#: the value must be above ``low``.
_LOWEST: dict[str, float | tuple[float, bool]] = {
    'epochs': 1, 'batch_size': 1, 'log_every': 1, 'val_every': 0, 'checkpoint_every': 0, 'max_nonfinite': 1,
    'stop_after_steps': 0,
    'data.train_samples': 1, 'data.val_samples': 1, 'data.test_samples': 1, 'data.seed_offset': 0,
    'data.frames_per_scene': 1, 'data.lidar_beams': 1, 'data.num_workers': 0, 'data.color_jitter': 0,
    'data.max_depth': (0, True),
    **{f'loss.{name}': 0 for name in ('sup', 'ckd', 'vrkd', 'kd', 'fitnets', 'at', 'sp')},
    'optim.lr': (0, True), 'optim.weight_decay': 0, 'optim.encoder_lr_factor': 0, 'optim.pct_start': (0, True),
    'optim.div_factor': (0, True), 'optim.final_div_factor': (0, True), 'optim.grad_clip': 0,
}
_HIGHEST = {'optim.pct_start': 1}


def _default(cls: type, name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory() if callable(f.default_factory) else f.default


def check_ranges(cfg: TrainConfig) -> None:
    """Refuse numbers no run can use (a batch of 0, a negative learning rate, no epochs ...), naming the dotted key
    and a valid value, before anything is built.

    Raises:
        ConfigError: the first value out of range.
    """
    for key, lowest in _LOWEST.items():
        section, _, name = key.rpartition('.')
        owner = getattr(cfg, section) if section else cfg
        value = getattr(owner, name)
        if value is None:
            continue
        low, above = lowest if isinstance(lowest, tuple) else (lowest, False)
        high = _HIGHEST.get(key)
        ok = math.isfinite(value) and (value > low if above else value >= low) and (high is None or value <= high)
        if not ok:
            bound = f'above {low}' if above else f'at least {low}'
            bound += f' and at most {high}' if high is not None else ''
            default = _default(type(owner), name)
            example = f'; e.g. {key}={default:g}' if default is not None else ''
            raise ConfigError(f'{key}: {value:g} is out of range, it must be {bound}{example}')
    data = cfg.data
    if data.dataset == 'surroundsim' and data.train_samples < cfg.batch_size:
        raise ConfigError(f'data.train_samples: {data.train_samples} is fewer than batch_size={cfg.batch_size}, so '
                          f'an epoch has no full batch to train on; raise data.train_samples or lower batch_size')
