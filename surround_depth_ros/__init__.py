"""surround_depth_ros: the online side of surround-depth (inference engine, synchroniser, node, bag tools)."""
