"""The inference hand-over keeps only the newest set, counts what it drops, and survives a failing set."""
from __future__ import annotations

import threading

from surround_depth_ros.worker import InferenceWorker, LatestSlot


def test_slot_keeps_the_newest_item_and_counts_the_dropped_ones():
    slot = LatestSlot(capacity=1)
    for i in range(10):
        slot.put(i)
    assert len(slot) == 1 and slot.max_depth == 1
    assert slot.take(timeout=0) == 9
    assert slot.dropped == 9 and slot.accepted == 10


def test_slot_never_holds_more_than_its_capacity():
    slot = LatestSlot(capacity=3)
    for i in range(100):
        slot.put(i)
        assert len(slot) <= 3
    assert [slot.take(0), slot.take(0), slot.take(0)] == [97, 98, 99]
    assert slot.take(timeout=0) is None


def test_worker_goes_on_after_a_set_that_raises():
    done = threading.Event()
    seen, errors = [], []

    def process(item):
        if item == 'bad':
            raise ValueError('broken frame')
        seen.append(item)
        if item == 'last':
            done.set()

    worker = InferenceWorker(process, log_error=errors.append)
    worker.submit('bad')
    while worker.errors == 0:
        done.wait(0.01)
    worker.submit('last')
    assert done.wait(5.0)
    worker.stop()
    assert seen == ['last'] and worker.errors == 1 and 'broken frame' in errors[0]


def test_a_blocked_worker_drops_old_sets_instead_of_queueing_them():
    gate = threading.Event()
    started = threading.Event()
    seen = []

    def process(item):
        started.set()
        gate.wait(5.0)
        seen.append(item)

    worker = InferenceWorker(process)
    worker.submit(0)
    assert started.wait(5.0)  # the worker is busy with set 0
    for i in range(1, 50):
        worker.submit(i)
    assert len(worker.slot) == 1 and worker.slot.dropped == 48
    gate.set()
    while worker.processed < 2:
        started.wait(0.01)
    worker.stop()
    assert seen == [0, 49]
