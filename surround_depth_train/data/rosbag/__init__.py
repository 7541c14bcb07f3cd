"""ROS 2 data without ROS 2: what the node, the bag tools and training on bags (``data.dataset=rosbag``) all read.

Nothing here imports rclpy, a message package or ``surround_depth_ros``; bags are read with ``rosbags``, messages
duck-typed, so training runs on machines without ROS 2. ``surround_depth_ros`` imports these modules, never the
other way round.

    topics      the topic layout, defined once (camera, LiDAR, TF, odometry and output topics; frames)
    messages    message -> numpy: images, CameraInfo, stamps (integer ns), PointCloud2, odometry
    undistort   per-camera undistortion maps from CameraInfo
    frames      image + CameraInfo -> undistorted RGB and its K (``FrameDecoder``); ego-body mask images
    sync        the approximate-time synchroniser of the cameras (message_filters' policy, plus partial sets)
    typestore   message types of a bag (its ROS distro's store, its stored definitions)
    topic_map   which topics and frames of a bag hold what (bags in other layouts)
    reader      a recorded drive read back (``BagSource``): cameras, rig, LiDAR, TF, ego motion; ``sync_sets``
    dataset     bags as training and evaluation data in the one sample schema (``RosbagDataset``)
"""
