"""SurroundSim: a procedural, seeded street world seen by six cameras and a spinning LiDAR, with exact depth.

``world.py`` draws the street, ``render.py`` ray-casts cameras, ``lidar.py`` the LiDAR, ``sequence.py`` moves the
ego and stamps the sensors, ``rig.py`` holds the vehicle, ``dataset.py`` serves samples in the shared schema.
"""
from surround_depth_train.data.surroundsim.dataset import (MAX_DEPTH, MIN_DEPTH, SPLIT_SEEDS, SurroundSimDataset,
                                                           payload_to_sample, render_sample)
from surround_depth_train.data.surroundsim.lidar import LidarConfig
from surround_depth_train.data.surroundsim.rig import surroundsim_rig
from surround_depth_train.data.surroundsim.world import World, WorldConfig, generate_world, load_world_config

__all__ = ['SurroundSimDataset', 'WorldConfig', 'World', 'LidarConfig', 'generate_world', 'load_world_config',
           'render_sample', 'payload_to_sample', 'surroundsim_rig', 'SPLIT_SEEDS', 'MIN_DEPTH', 'MAX_DEPTH']
