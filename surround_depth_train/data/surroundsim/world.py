"""Procedural street worlds: a seeded generator of axis-aligned boxes, spheres and a textured ground plane.

World frame (REP 103 style): x along the street, y to the left, z up, the ground at ``z = 0``. Right-hand traffic:
lanes towards +x lie at ``y < 0``. Across the street, from the centre line outwards: driving lanes
(``lanes_per_direction`` of ``lane_width``), a parking lane, a curb and sidewalk (a box ``curb_height`` tall), a
setback strip of bare ground, then buildings. Poles and trees stand on the sidewalk, parked cars in the parking
lanes, moving cars drive along the lanes at constant speed (one speed per lane, so they never run into each other).

Every object is an axis-aligned box or a sphere, so ray casting is exact and cheap (``render.py``); a moving box
translates along x at ``velocity`` m/s: its bounds at time ``t`` are ``lo + [v t, 0, 0]``.

Two different "cities" are two :class:`WorldConfig` settings (``config/surroundsim/*.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from surround_depth_train.config import ConfigError, from_mapping, load_config

__all__ = ['WorldConfig', 'World', 'Material', 'generate_world', 'load_world_config']


class Material:
    """Material ids: they select the texture in the renderer and the LiDAR reflectivity."""

    GROUND = 0
    SIDEWALK = 1
    BUILDING = 2
    CAR_BODY = 3
    CAR_GLASS = 4
    POLE = 5
    TRUNK = 6
    FOLIAGE = 7
    EGO = 8


@dataclass
class WorldConfig:
    """Statistics of one kind of city. Ranges are ``(min, max)`` of uniform draws; lengths in metres.

    Attributes:
        lanes_per_direction: driving lanes each way.
        lane_width: width of one driving lane.
        parking_width: width of the parking lane on each side (parked cars stand there).
        sidewalk_width: sidewalk width (curb to setback strip).
        curb_height: sidewalk height above the road.
        setback: distance from the sidewalk to a building's facade.
        building_height, building_width, building_depth, building_gap: building boxes and the gaps between them.
        parked_car_probability: probability that a parking slot (6.5 m) holds a car.
        moving_cars_per_100m: moving cars per 100 m of street (all lanes together).
        moving_car_speed: speed of a lane's traffic (m/s).
        pole_spacing: distance between street-light poles on each side.
        tree_probability: probability of a tree between two poles.
        ego_speed: the ego vehicle's speed (m/s).
        ego_weave: amplitude (m) of the ego's gentle lateral weave within its lane (gives yaw rates to compensate).
        street_length: length of the generated street (m), centred on the ego's start.
    """

    lanes_per_direction: int = 1
    lane_width: float = 3.5
    parking_width: float = 2.4
    sidewalk_width: float = 3.0
    curb_height: float = 0.15
    setback: tuple[float, float] = (0.0, 3.0)
    building_height: tuple[float, float] = (6.0, 24.0)
    building_width: tuple[float, float] = (8.0, 24.0)
    building_depth: tuple[float, float] = (8.0, 16.0)
    building_gap: tuple[float, float] = (0.0, 4.0)
    parked_car_probability: float = 0.5
    moving_cars_per_100m: float = 2.0
    moving_car_speed: tuple[float, float] = (4.0, 12.0)
    pole_spacing: float = 25.0
    tree_probability: float = 0.5
    ego_speed: tuple[float, float] = (6.0, 11.0)
    ego_weave: float = 0.25
    street_length: float = 600.0

    def __post_init__(self) -> None:
        if self.lanes_per_direction < 1:
            raise ConfigError(f'lanes_per_direction: must be >= 1, got {self.lanes_per_direction}')
        for name in ('lane_width', 'parking_width', 'sidewalk_width', 'pole_spacing', 'street_length'):
            if getattr(self, name) <= 0:
                raise ConfigError(f'{name}: must be positive, got {getattr(self, name)}')
        for name in ('setback', 'building_height', 'building_width', 'building_depth', 'building_gap',
                     'moving_car_speed', 'ego_speed'):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ConfigError(f'{name}: expected a range (min, max) with 0 <= min <= max, got {(lo, hi)}')
        if self.building_width[0] <= 0 or self.building_height[0] <= 0:
            raise ConfigError('building_width and building_height: minimum must be positive')
        for name in ('parked_car_probability', 'tree_probability'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f'{name}: must be a probability in [0, 1], got {getattr(self, name)}')

    @property
    def road_half_width(self) -> float:
        """Distance from the centre line to the curb."""
        return self.lanes_per_direction * self.lane_width + self.parking_width


def load_world_config(source: 'WorldConfig | dict | str | Path | None') -> WorldConfig:
    """A :class:`WorldConfig` from an instance, a mapping, a YAML path, or ``None`` (defaults)."""
    if source is None:
        return WorldConfig()
    if isinstance(source, WorldConfig):
        return source
    if isinstance(source, dict):
        return from_mapping(WorldConfig, source)
    return load_config(WorldConfig, source)


@dataclass
class World:
    """The generated primitives (world frame, at ``t = 0``) and the ego's drive.

    Box ``k`` spans ``[box_lo[k], box_hi[k]]`` and moves along x at ``box_velocity[k]``. Spheres are static.
    """

    config: WorldConfig
    seed: int
    box_lo: np.ndarray
    box_hi: np.ndarray
    box_velocity: np.ndarray
    box_material: np.ndarray
    box_color: np.ndarray
    sphere_center: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    sphere_radius: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sphere_color: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    ego_lane_y: float = -1.75
    ego_speed: float = 8.0
    ego_weave: float = 0.0
    ego_weave_period: float = 12.0
    sun: np.ndarray = field(default_factory=lambda: np.array([0.4, 0.3, 0.866]))
    texture_seed: int = 0

    @property
    def num_boxes(self) -> int:
        return len(self.box_lo)

    def boxes_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Box bounds ``(lo, hi)`` ``[P, 3]`` at time ``t`` (s)."""
        shift = np.zeros_like(self.box_lo)
        shift[:, 0] = self.box_velocity * t
        return self.box_lo + shift, self.box_hi + shift

    @classmethod
    def from_boxes(cls, lo: np.ndarray, hi: np.ndarray, velocity: np.ndarray | None = None,
                   material: np.ndarray | None = None, config: WorldConfig | None = None) -> 'World':
        """A hand-made world (tests): static grey boxes over the ground plane, ego parked at the origin."""
        lo = np.asarray(lo, np.float64).reshape(-1, 3)
        hi = np.asarray(hi, np.float64).reshape(-1, 3)
        n = len(lo)
        return cls(config=config or WorldConfig(), seed=0, box_lo=lo, box_hi=hi,
                   box_velocity=np.zeros(n) if velocity is None else np.asarray(velocity, np.float64),
                   box_material=np.full(n, Material.BUILDING) if material is None else np.asarray(material),
                   box_color=np.full((n, 3), 0.6, np.float32), ego_lane_y=0.0, ego_speed=0.0)


class _Builder:
    def __init__(self) -> None:
        self.lo: list = []
        self.hi: list = []
        self.vel: list = []
        self.mat: list = []
        self.col: list = []
        self.sc: list = []
        self.sr: list = []
        self.scol: list = []

    def box(self, lo, hi, material: int, color, velocity: float = 0.0) -> None:
        self.lo.append(lo)
        self.hi.append(hi)
        self.vel.append(velocity)
        self.mat.append(material)
        self.col.append(color)

    def sphere(self, center, radius: float, color) -> None:
        self.sc.append(center)
        self.sr.append(radius)
        self.scol.append(color)


_CAR_COLORS = np.array([[0.75, 0.75, 0.78], [0.08, 0.08, 0.09], [0.55, 0.06, 0.05], [0.10, 0.18, 0.45],
                        [0.85, 0.85, 0.82], [0.35, 0.36, 0.38], [0.55, 0.45, 0.25], [0.15, 0.35, 0.20]])
_FACADE_COLORS = np.array([[0.72, 0.62, 0.50], [0.55, 0.30, 0.22], [0.80, 0.78, 0.72], [0.45, 0.45, 0.47],
                           [0.66, 0.55, 0.40], [0.60, 0.62, 0.66], [0.82, 0.72, 0.55], [0.38, 0.28, 0.22]])


def _car(b: _Builder, rng: np.random.Generator, x: float, y: float, heading: float, velocity: float) -> None:
    """A car as a body box and a narrower glass cabin box; ``heading`` +1 faces +x, -1 faces -x."""
    length = rng.uniform(3.9, 4.9)
    width = rng.uniform(1.7, 1.95)
    body_h = rng.uniform(0.85, 1.0)
    cabin_h = rng.uniform(0.45, 0.6)
    color = _CAR_COLORS[rng.integers(len(_CAR_COLORS))] * rng.uniform(0.85, 1.1)
    b.box([x - length / 2, y - width / 2, 0.22], [x + length / 2, y + width / 2, body_h], Material.CAR_BODY,
          np.clip(color, 0, 1), velocity)
    # the cabin sits towards the rear of the car
    c0 = x - heading * length * 0.30
    c1 = x + heading * length * 0.15
    b.box([min(c0, c1), y - width / 2 + 0.08, body_h], [max(c0, c1), y + width / 2 - 0.08, body_h + cabin_h],
          Material.CAR_GLASS, np.clip(color * 0.6, 0, 1), velocity)


def generate_world(config: WorldConfig, seed: int) -> World:
    """Draw a street from ``config``; the same ``(config, seed)`` gives the same world on any machine.

    Only numpy's PCG64 generator is used, so the world does not depend on thread counts or torch.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    c = config
    b = _Builder()
    half = c.street_length / 2.0
    x0, x1 = -half, half
    road = c.road_half_width
    for side in (-1.0, 1.0):
        # sidewalk slab from the curb outwards
        y_in, y_out = road, road + c.sidewalk_width
        b.box([x0, min(side * y_in, side * y_out), 0.0], [x1, max(side * y_in, side * y_out), c.curb_height],
              Material.SIDEWALK, np.array([0.62, 0.61, 0.58]) * rng.uniform(0.9, 1.05))
        # buildings
        x = x0 + rng.uniform(0, 10)
        while x < x1:
            w = rng.uniform(*c.building_width)
            h = rng.uniform(*c.building_height)
            d = rng.uniform(*c.building_depth)
            s = rng.uniform(*c.setback)
            y_face = road + c.sidewalk_width + s
            lo = [x, min(side * y_face, side * (y_face + d)), 0.0]
            hi = [min(x + w, x1), max(side * y_face, side * (y_face + d)), h]
            color = _FACADE_COLORS[rng.integers(len(_FACADE_COLORS))] * rng.uniform(0.8, 1.15)
            b.box(lo, hi, Material.BUILDING, np.clip(color, 0, 1))
            x += w + rng.uniform(*c.building_gap)
        # parked cars, one per 6.5 m slot
        y_park = side * (road - c.parking_width / 2.0 + 0.1)
        for xs in np.arange(x0 + 3.0, x1 - 3.0, 6.5):
            if rng.uniform() < c.parked_car_probability:
                _car(b, rng, xs + rng.uniform(-0.6, 0.6), y_park + rng.uniform(-0.15, 0.15), side * -1.0, 0.0)
        # street lights (pole + arm over the road) and trees between them
        y_pole = side * (road + 0.45)
        for xp in np.arange(x0 + rng.uniform(0, c.pole_spacing), x1, c.pole_spacing):
            hp = rng.uniform(6.0, 8.0)
            b.box([xp - 0.1, y_pole - 0.1, 0.0], [xp + 0.1, y_pole + 0.1, hp], Material.POLE, [0.35, 0.36, 0.37])
            arm_end = y_pole - side * 1.8
            b.box([xp - 0.06, min(y_pole, arm_end), hp - 0.15], [xp + 0.06, max(y_pole, arm_end), hp],
                  Material.POLE, [0.35, 0.36, 0.37])
            if rng.uniform() < c.tree_probability:
                xt = xp + c.pole_spacing / 2.0 + rng.uniform(-2, 2)
                yt = side * (road + c.sidewalk_width * rng.uniform(0.55, 0.8))
                trunk = rng.uniform(2.2, 3.5)
                r = rng.uniform(1.2, 2.2)
                b.box([xt - 0.15, yt - 0.15, 0.0], [xt + 0.15, yt + 0.15, trunk + r * 0.5], Material.TRUNK,
                      [0.30, 0.22, 0.15])
                b.sphere([xt, yt, trunk + r * 0.8], r, np.array([0.18, 0.38, 0.14]) * rng.uniform(0.8, 1.2))
    # moving traffic: one speed per lane, cars at least 12 m apart in a lane
    ego_speed = rng.uniform(*c.ego_speed)
    lanes = [(sgn, k) for sgn in (-1.0, 1.0) for k in range(c.lanes_per_direction)]
    n_cars = rng.poisson(c.moving_cars_per_100m * c.street_length / 100.0)
    lane_speed = {lane: rng.uniform(*c.moving_car_speed) for lane in lanes}
    ego_lane = (-1.0, 0)
    lane_speed[ego_lane] = ego_speed  # traffic in the ego's lane keeps its distance
    placed: dict = {lane: [] for lane in lanes}
    for _ in range(n_cars):
        lane = lanes[rng.integers(len(lanes))]
        xc = rng.uniform(x0 + 5, x1 - 5)
        if lane == ego_lane and abs(xc) < 15.0:
            continue
        if any(abs(xc - other) < 12.0 for other in placed[lane]):
            continue
        placed[lane].append(xc)
        sgn, k = lane
        heading = -sgn  # lanes at y < 0 drive towards +x
        y = sgn * (k + 0.5) * c.lane_width
        _car(b, rng, xc, y, heading, heading * lane_speed[lane])
    az = rng.uniform(0, 2 * np.pi)
    el = np.deg2rad(rng.uniform(25, 60))
    sun = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
    return World(
        config=c, seed=int(seed),
        box_lo=np.asarray(b.lo, np.float64), box_hi=np.asarray(b.hi, np.float64),
        box_velocity=np.asarray(b.vel, np.float64), box_material=np.asarray(b.mat, np.int64),
        box_color=np.asarray(b.col, np.float32),
        sphere_center=np.asarray(b.sc, np.float64).reshape(-1, 3), sphere_radius=np.asarray(b.sr, np.float64),
        sphere_color=np.asarray(b.scol, np.float32).reshape(-1, 3),
        ego_lane_y=-0.5 * c.lane_width, ego_speed=float(ego_speed), ego_weave=float(c.ego_weave),
        ego_weave_period=float(rng.uniform(8.0, 16.0)), sun=sun, texture_seed=int(rng.integers(1 << 20)),
    )
