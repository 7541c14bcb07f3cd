"""rosbag2 tools without rclpy: the writer (``writer``), scene -> topics (``scene``) and one converter per dataset
(``nuscenes``, ``ddad``, ``surroundsim``); ``python -m surround_depth_ros.convert`` is the command line."""
