"""The types of a bag: rosbags' store of the bag's distribution (Humble's when it names none), the bag's own stored
definitions before it, and every type neither knows named as undecodable instead of refusing the bag."""
from __future__ import annotations

from pathlib import Path

import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from surround_depth_train.data.rosbag.typestore import distro_store, open_reader

CUSTOM = 'acme_msgs/msg/Gear'


@pytest.mark.parametrize('ros_distro, store', [(None, 'humble'), ('humble', 'humble'), ('iron', 'iron'),
                                               ('jazzy', 'jazzy'), ('kilted', 'kilted'), ('rolling', 'rolling'),
                                               ('rosbags', 'humble'), ('', 'humble')])
def test_the_bag_s_ros_distro_picks_rosbags_store_and_humble_when_it_names_none(ros_distro, store):
    name, typestore = distro_store(ros_distro)
    assert name == store and 'sensor_msgs/msg/CameraInfo' in typestore.fielddefs


def test_a_humble_bag_reads_every_standard_type_from_humble_s_store_and_names_its_custom_type(humble_bag):
    reader, types = open_reader(humble_bag)
    try:
        assert all(c.msgdef.data == '' for c in reader.connections)  # as Humble writes it: no definitions
        assert types.source == 'ros2_humble typestore'
        assert set(types.undecodable) == {'acme_vehicle_msgs/msg/Status'}
        assert 'no definition' in types.undecodable['acme_vehicle_msgs/msg/Status']
        info = next(c for c in reader.connections if c.msgtype == 'sensor_msgs/msg/CameraInfo')
        _, _, raw = next(reader.messages(connections=[info]))
        assert types.deserialize(raw, info.msgtype).k[0] > 0
    finally:
        reader.close()


@pytest.mark.parametrize('storage', [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
@pytest.mark.parametrize('version', [8, 9])
def test_a_custom_type_whose_definition_the_bag_stores_decodes(tmp_path: Path, storage, version):
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg('uint8 gear\nstd_msgs/Header header', CUSTOM))
    msg = store.types[CUSTOM](gear=4, header=store.types['std_msgs/msg/Header'](
        stamp=store.types['builtin_interfaces/msg/Time'](sec=1_700_000_000, nanosec=5), frame_id='base_link'))
    bag = tmp_path / 'bag'
    with Writer(bag, version=version, storage_plugin=storage) as writer:
        conn = writer.add_connection('/gear', CUSTOM, typestore=store)
        writer.write(conn, 1, store.serialize_cdr(msg, CUSTOM))
    reader, types = open_reader(bag)
    try:
        assert types.undecodable == {} and 'definitions' in types.source
        (conn,) = reader.connections
        _, _, raw = next(reader.messages())
        got = types.deserialize(raw, conn.msgtype)
        assert got.gear == 4 and got.header.stamp.nanosec == 5 and got.header.frame_id == 'base_link'
    finally:
        reader.close()
