"""The live evaluator keeps the node's statuses as they stood while the bag played: the silent cameras after the
replay ended are not reported as what happened during the run."""
import pytest

rclpy = pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402

from surround_depth_ros.bag.live_evaluator import LiveEvaluator, diagnostics_table  # noqa: E402
from surround_depth_train.data.surroundsim import surroundsim_rig  # noqa: E402

pytestmark = [pytest.mark.ros]


def _status(name: str, level: int, message: str) -> DiagnosticArray:
    return DiagnosticArray(status=[DiagnosticStatus(name=name, level=bytes([level]), message=message)])


def _odom(sec: int) -> Odometry:
    msg = Odometry()
    msg.header.stamp.sec, msg.header.frame_id, msg.child_frame_id = sec, 'odom', 'base_link'
    msg.pose.pose.orientation.w = 1.0
    return msg


def test_statuses_after_the_last_replayed_message_are_not_reported_as_during_the_run(monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', '94')
    rclpy.init()
    try:
        node = LiveEvaluator(surroundsim_rig(96, 64))
        node._on_diagnostics(_status('surround_depth_node: pipeline', 0, 'ok'))
        node._on_odom(_odom(1))  # the bag still plays
        node._on_diagnostics(_status('surround_depth_node: pipeline', 1, 'missing cameras: front'))  # it ended
        live = node.result()['live']
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    assert live['diagnostics_during']['surround_depth_node: pipeline']['message'] == 'ok'
    assert live['diagnostics']['surround_depth_node: pipeline']['message'] == 'missing cameras: front'
    during = diagnostics_table(live, at_the_end=False)
    assert 'OK: ok' in during and 'missing cameras' not in during
    assert 'WARN: missing cameras: front' in diagnostics_table(live)
