"""surround_depth_train: the ROS-free core of surround-depth (geometry, data, models, losses, training, evaluation)."""
__version__ = '0.1.0'
