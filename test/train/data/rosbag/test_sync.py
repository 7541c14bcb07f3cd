"""The approximate-time synchroniser: message_filters' sets, partial sets, pairing, loops, threads, cost."""
from __future__ import annotations

import math
import random
import threading
from fractions import Fraction
from itertools import product

import pytest

from surround_depth_train.data.rosbag.sync import ApproximateTimeSync, CameraSet

CAMERAS = ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_BACK_RIGHT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_FRONT_LEFT']
NUSCENES_OFFSETS = [0.0, 0.008, 0.017, 0.025, 0.033, 0.042]  # a nuScenes sample's six stamps span ~42 ms
PERIOD = 1 / 12
T0 = 100.0
LATENCY = 0.005


def stamp_of(k: int, camera: int, offsets=NUSCENES_OFFSETS) -> float:
    return T0 + k * PERIOD + offsets[camera]


def ns(seconds: float) -> int:
    """A test stamp written in seconds as the integer nanoseconds the synchroniser takes."""
    return round(seconds * 1e9)


def feed(sync: ApproximateTimeSync, camera: str, stamp: float, now: float, info_first: bool = True) -> list[CameraSet]:
    """One camera's image and its CameraInfo; payloads carry (camera, stamp ns) so pairing can be checked."""
    out = []
    if info_first:
        out += sync.add_info(camera, ns(stamp), ('info', camera, ns(stamp)), now)
    out += sync.add_image(camera, ns(stamp), ('image', camera, ns(stamp)), now)
    if not info_first:
        out += sync.add_info(camera, ns(stamp), ('info', camera, ns(stamp)), now)
    return out


def feed_round(sync, k, cameras=CAMERAS, offsets=NUSCENES_OFFSETS, skip=(), now=None, t_shift=0.0):
    """Round k of every camera (but `skip`) in stamp order, each arriving LATENCY after its stamp."""
    out = []
    for i, cam in enumerate(cameras):
        if cam in skip:
            continue
        stamp = stamp_of(k, i, offsets)
        out += feed(sync, cam, stamp, (stamp + LATENCY if now is None else now) + t_shift)
    return out


def assert_consistent(camera_set: CameraSet, slop: float, cameras=CAMERAS) -> None:
    """Frames in camera order, each paired with the info of its own stamp, spread within the slop."""
    assert list(camera_set.frames) + camera_set.missing != [] and \
        sorted(list(camera_set.frames) + camera_set.missing, key=cameras.index) == list(cameras)
    assert list(camera_set.frames) == [c for c in cameras if c in camera_set.frames]
    for cam, frame in camera_set.frames.items():
        assert frame.camera == cam
        assert frame.image == ('image', cam, frame.stamp_ns)
        assert frame.info == ('info', cam, frame.stamp_ns)
    stamps = [f.stamp_ns for f in camera_set.frames.values()]
    assert camera_set.stamp_ns == max(stamps) and camera_set.span_ns == max(stamps) - min(stamps) <= ns(slop)
    assert camera_set.complete == (not camera_set.missing)


# --------------------------------------------------------------------------------------------- message_filters sets
def test_staggered_nuscenes_stamps_come_out_as_complete_sets_in_order():
    sync = ApproximateTimeSync(CAMERAS)
    sets = []
    for k in range(30):
        sets += feed_round(sync, k)
    # the last round's set waits for proof that no later image makes a better one
    assert len(sets) in (29, 30)
    for k, camera_set in enumerate(sets):
        assert camera_set.complete
        assert_consistent(camera_set, 0.05)
        assert [f.stamp_ns for f in camera_set.frames.values()] == [ns(stamp_of(k, i)) for i in range(6)]
    stats = sync.stats()
    assert stats.sets_emitted == len(sets) and stats.partial_sets == 0 and stats.resets == 0
    assert stats.cameras['CAM_FRONT'].rate_hz == pytest.approx(12.0, rel=1e-6)
    assert all(c.dropped == 0 and c.out_of_order == 0 and c.queued <= 2 for c in stats.cameras.values())


def test_set_goes_out_when_the_first_camera_of_the_next_round_arrives():
    sync = ApproximateTimeSync(CAMERAS)
    assert feed_round(sync, 0) == []
    emitted = feed(sync, 'CAM_FRONT', stamp_of(1, 0), stamp_of(1, 0) + LATENCY)
    assert len(emitted) == 1 and emitted[0].stamp_ns == ns(stamp_of(0, 5))


def test_set_goes_out_as_soon_as_queued_frames_prove_it_the_best():
    sync = ApproximateTimeSync(['A', 'B', 'C'])
    assert feed(sync, 'B', T0 + 0.03, T0) == []
    assert feed(sync, 'A', T0 + 0.03, T0) == []
    assert feed(sync, 'B', T0 + 0.21, T0) == []  # B runs ahead
    # C completes (A, B, C) = (0.03, 0.03, 0.05); A's next frame could still come at 0.04, but any set with it holds
    # B's 0.21: nothing can beat this set, so it goes out now rather than when A's next frame arrives
    emitted = feed(sync, 'C', T0 + 0.05, T0)
    assert [[f.stamp_ns for f in s.frames.values()] for s in emitted] == [[ns(T0 + 0.03), ns(T0 + 0.03),
                                                                           ns(T0 + 0.05)]]


@pytest.mark.parametrize('epoch_ns', [1_700_000_000_000_000_000, 1_767_225_599_999_999_999])
def test_at_epoch_stamps_a_span_of_exactly_the_slop_is_a_set_and_one_nanosecond_more_is_not(epoch_ns):
    """As message_filters' C++ policy (``end - start > slop`` is discarded): exact in integer nanoseconds. Through
    float seconds these stamps round by hundreds of ns and the boundary moves."""
    slop_ns = 50_000_000
    for extra, expected in ((0, [(epoch_ns, epoch_ns + slop_ns)]), (1, [])):
        sync = ApproximateTimeSync(['A', 'B'], slop=0.05, timeout=0.5)
        b = epoch_ns + slop_ns + extra
        out = sync.add_info('A', epoch_ns, 'info', 0.0) + sync.add_image('A', epoch_ns, 'a', 0.0)
        out += sync.add_info('B', b, 'info', 0.0) + sync.add_image('B', b, 'b', 0.0)
        out += sync.poll(5.0) + sync.poll(10.0)  # the rig falls quiet: a pending set goes out after the timeout
        got = [tuple(f.stamp_ns for f in s.frames.values()) for s in out if s.complete]
        assert got == expected, extra
        assert all(s.span_ns <= slop_ns for s in out)
    assert round((epoch_ns + slop_ns) * 1e-9 * 1e9) - round(epoch_ns * 1e-9 * 1e9) != slop_ns  # why ns matter


def test_stamps_further_apart_than_the_slop_are_never_emitted_together():
    cams = ['A', 'B']
    sync = ApproximateTimeSync(cams, slop=0.05)
    sets = []
    for k in range(40):  # B lags A by 60 ms: only (B_k, A_k+1), 40 ms apart, may form a set
        sets += feed(sync, 'A', T0 + 0.1 * k, T0 + 0.1 * k)
        sets += feed(sync, 'B', T0 + 0.1 * k + 0.06, T0 + 0.1 * k + 0.06)
    assert len(sets) >= 38
    for s in sets:
        assert_consistent(s, 0.05, cams)
        assert s.frames['A'].stamp - s.frames['B'].stamp == pytest.approx(0.04)

    wide = ApproximateTimeSync(cams, slop=0.05)
    for k in range(40):  # 100 ms from either neighbour: no set at all, and bounded queues
        assert feed(wide, 'A', T0 + 0.2 * k, T0) == []
        assert feed(wide, 'B', T0 + 0.2 * k + 0.1, T0) == []
    assert all(c.queued <= 10 for c in wide.stats().cameras.values())


def test_queue_size_bounds_memory_when_only_one_camera_talks():
    sync = ApproximateTimeSync(CAMERAS, queue_size=10)
    for k in range(1000):
        stamp = T0 + k * PERIOD
        assert feed(sync, 'CAM_FRONT', stamp, now=T0) == []  # the clock stands still: no timeout
        s = sync.stats().cameras['CAM_FRONT']
        assert s.queued <= 10 and s.awaiting_info == 0
    assert sync.stats().cameras['CAM_FRONT'].dropped == 990

    no_info = ApproximateTimeSync(CAMERAS, queue_size=10)
    for k in range(1000):  # images whose CameraInfo never comes wait in a bounded queue too
        no_info.add_image('CAM_FRONT', ns(T0 + k * PERIOD), None, T0)
        assert no_info.stats().cameras['CAM_FRONT'].awaiting_info <= 10
    assert no_info.stats().cameras['CAM_FRONT'].dropped == 990


# --------------------------------------------------------------------------------------------- partial sets
def test_silent_camera_gives_partial_sets_after_the_timeout_and_full_sets_when_it_returns():
    sync = ApproximateTimeSync(CAMERAS, timeout=0.5)
    emitted = []  # (now at emission, set)
    dead = range(10, 30)
    for k in range(60):
        for i, cam in enumerate(CAMERAS):
            if cam == 'CAM_BACK_RIGHT' and k in dead:
                continue
            stamp = stamp_of(k, i)
            emitted += [(stamp + LATENCY, s) for s in feed(sync, cam, stamp, stamp + LATENCY)]
        if k == 25:
            s = sync.stats().cameras['CAM_BACK_RIGHT']
            assert s.silent and s.staleness > 0.5 and s.last_stamp == pytest.approx(stamp_of(9, 2)) and s.queued == 0
    last_heard = stamp_of(9, 2) + LATENCY
    partial = [(now, s) for now, s in emitted if not s.complete]
    assert len(partial) >= 18
    for now, s in partial:
        assert s.missing == ['CAM_BACK_RIGHT'] and len(s.frames) == 5
        assert now > last_heard + 0.5  # never before the timeout
        assert_consistent(s, 0.05)
    sets = [s for _, s in emitted]
    assert all(s.complete for s in sets if s.stamp < stamp_of(10, 0))
    assert all(s.complete for s in sets if s.stamp > stamp_of(31, 0))  # full sets resume
    assert sum(s.complete for s in sets if s.stamp > stamp_of(31, 0)) >= 27
    stamps = [s.stamp for s in sets]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    stats = sync.stats()
    assert stats.partial_sets == len(partial)
    assert stats.cameras['CAM_BACK_RIGHT'].missing_count == len(partial)
    assert not stats.cameras['CAM_BACK_RIGHT'].silent
    assert all(stats.cameras[c].missing_count == 0 for c in CAMERAS if c != 'CAM_BACK_RIGHT')


def test_poll_emits_the_partial_sets_due_while_a_camera_is_silent():
    sync = ApproximateTimeSync(CAMERAS, timeout=0.5)
    for k in range(10):
        feed_round(sync, k)
    sets = []
    for k in range(10, 15):  # 0.42 s without CAM_BACK: within the timeout, nothing goes out
        sets += feed_round(sync, k, skip=('CAM_BACK',))
    assert [s.stamp_ns for s in sets] == [ns(stamp_of(9, 5))] and sets[0].complete  # round 9, proven by round 10
    assert sync.poll(stamp_of(14, 5) + LATENCY) == []
    due = sync.poll(stamp_of(9, 3) + LATENCY + 0.51)
    assert [s.missing for s in due] == [['CAM_BACK']] * len(due) and len(due) >= 4
    assert [s.frames['CAM_FRONT'].stamp_ns for s in due] == [ns(stamp_of(k, 0)) for k in range(10, 10 + len(due))]
    assert sync.stats().cameras['CAM_BACK'].silent


def test_last_set_of_a_camera_that_dies_still_goes_out_complete():
    sync = ApproximateTimeSync(CAMERAS, timeout=0.5)
    sets = []
    for k in range(20):
        sets += feed_round(sync, k, skip=('CAM_FRONT',) if k >= 10 else ())
    # round 9's set waited for CAM_FRONT's next image (to prove it the best); once CAM_FRONT is declared silent,
    # no better set can come, so it goes out complete, and the partial ones follow
    assert [s.stamp_ns for s in sets if s.complete] == [ns(stamp_of(k, 5)) for k in range(10)]
    partial = [s for s in sets if not s.complete]
    assert partial and all(s.missing == ['CAM_FRONT'] for s in partial)
    assert partial[0].frames['CAM_FRONT_RIGHT'].stamp_ns == ns(stamp_of(10, 1))


def test_camera_that_never_sends_is_left_out_after_the_timeout_from_the_start():
    sync = ApproximateTimeSync(CAMERAS, timeout=0.5)
    sets = []
    for k in range(20):
        sets += feed_round(sync, k, skip=('CAM_FRONT',))
    assert sets and all(s.missing == ['CAM_FRONT'] for s in sets)
    assert sync.stats().cameras['CAM_FRONT'].staleness is None


def test_a_paused_rig_gives_every_camera_a_fresh_timeout_when_it_resumes():
    sync = ApproximateTimeSync(CAMERAS, timeout=0.5)
    for k in range(10):
        feed_round(sync, k)
    flushed = sync.poll(stamp_of(10, 0) + 30.0)  # everyone quiet: nobody is left out
    assert len(flushed) <= 1 and all(s.complete for s in flushed)  # the last pending set goes out whole
    sets = []
    for k in range(10, 20):
        sets += feed_round(sync, k, t_shift=30.0)
    assert sets and all(s.complete for s in sets)


# --------------------------------------------------------------------------------------------- time going backwards
def test_bag_loop_resets_the_queues_and_sets_resume():
    sync = ApproximateTimeSync(CAMERAS)
    wall = [1000.0]

    def tick():
        wall[0] += 0.014
        return wall[0]

    first, second = [], []
    for k in range(30):
        first += feed_round(sync, k, now=tick())
    for k in range(30):  # the bag starts over: every camera's stamps jump back by 2.5 s
        second += feed_round(sync, k, now=tick())
    stats = sync.stats()
    assert stats.resets == 1
    assert all(c.out_of_order == 0 for c in stats.cameras.values())
    assert len(second) >= 29 and all(s.complete for s in second)
    for k, s in enumerate(second):
        assert [f.stamp_ns for f in s.frames.values()] == [ns(stamp_of(k, i)) for i in range(6)]


def test_sim_time_loop_where_the_clock_jumps_back_resets_too():
    sync = ApproximateTimeSync(CAMERAS)
    for k in range(30):
        feed_round(sync, k)  # now = stamp + latency: sim time follows the bag
    second = []
    for k in range(30):
        second += feed_round(sync, k)
    stats = sync.stats()
    assert 1 <= stats.resets <= 2
    assert len(second) >= 28 and all(s.complete for s in second)
    first = round((second[0].stamp - stamp_of(0, 5)) / PERIOD)
    for k, s in enumerate(second, start=first):
        assert [f.stamp_ns for f in s.frames.values()] == [ns(stamp_of(k, i)) for i in range(6)]


def test_node_clock_jumping_back_resets_but_a_small_step_back_does_not():
    sync = ApproximateTimeSync(CAMERAS, timeout=0.5)
    for k in range(5):
        feed_round(sync, k)
    now = stamp_of(4, 5) + LATENCY
    assert sync.poll(now - 0.01) == [] and sync.stats().resets == 0  # threads read the clock out of order
    assert sum(c.queued for c in sync.stats().cameras.values()) > 0
    assert sync.poll(now - 5.0) == []
    stats = sync.stats()
    assert stats.resets == 1 and sum(c.queued for c in stats.cameras.values()) == 0
    assert not any(c.silent for c in stats.cameras.values())
    sets = []
    for k in range(5, 15):  # stamps go on; the clock restarted 5 s back
        sets += feed_round(sync, k, t_shift=-5.0)
    assert len(sets) >= 9 and all(s.complete for s in sets)


def test_one_out_of_order_image_is_dropped_and_counted():
    sync = ApproximateTimeSync(CAMERAS)
    sets = []
    for k in range(20):
        sets += feed_round(sync, k)
        if k == 10:  # a late duplicate of round 9 and an image stamped between rounds 9 and 10
            sets += feed(sync, 'CAM_BACK', stamp_of(9, 3), stamp_of(10, 5) + LATENCY)
            sets += feed(sync, 'CAM_BACK', stamp_of(9, 3) + 0.04, stamp_of(10, 5) + LATENCY)
    stats = sync.stats()
    assert stats.cameras['CAM_BACK'].out_of_order == 2
    assert all(stats.cameras[c].out_of_order == 0 for c in CAMERAS if c != 'CAM_BACK')
    assert stats.resets == 0 and len(sets) >= 19 and all(s.complete for s in sets)
    back = [s.frames['CAM_BACK'].stamp_ns for s in sets]
    assert back == [ns(stamp_of(k, 3)) for k in range(len(sets))]


def test_single_camera_jumping_far_back_is_a_glitch_not_a_loop():
    sync = ApproximateTimeSync(CAMERAS)
    sets = []
    for k in range(20):
        sets += feed_round(sync, k)
        if k == 10:
            sets += feed(sync, 'CAM_FRONT_LEFT', stamp_of(10, 5) - 5.0, stamp_of(10, 5) + LATENCY)
    stats = sync.stats()
    assert stats.resets == 0 and stats.cameras['CAM_FRONT_LEFT'].out_of_order == 1
    assert len(sets) >= 19 and all(s.complete for s in sets)


def test_reset_forgets_queued_frames_and_counts():
    sync = ApproximateTimeSync(CAMERAS)
    feed_round(sync, 0)
    assert sum(c.queued for c in sync.stats().cameras.values()) == 6
    sync.reset()
    stats = sync.stats()
    assert stats.resets == 1 and sum(c.queued for c in stats.cameras.values()) == 0
    sets = []
    for k in range(5):  # earlier stamps are fine after a reset
        sets += feed_round(sync, k - 50)
    assert len(sets) >= 4 and all(s.complete for s in sets)


# --------------------------------------------------------------------------------------------- image / CameraInfo
def test_image_and_camera_info_pair_by_stamp_in_either_order():
    sync = ApproximateTimeSync(CAMERAS)
    sets = []
    rng = random.Random(3)
    for k in range(20):
        for i, cam in enumerate(CAMERAS):
            stamp = stamp_of(k, i)
            sets += feed(sync, cam, stamp, stamp + LATENCY, info_first=rng.random() < 0.5)
    assert len(sets) >= 19
    for s in sets:
        assert s.complete
        assert_consistent(s, 0.05)  # every frame carries the info of its own stamp


def test_camera_info_with_a_different_stamp_is_not_paired():
    def run(info_slop):
        sync = ApproximateTimeSync(CAMERAS, info_slop=info_slop)
        sets = []
        for k in range(20):
            for i, cam in enumerate(CAMERAS):
                stamp = stamp_of(k, i)
                now = stamp + LATENCY
                info_stamp = stamp + 0.001 if cam == 'CAM_BACK_LEFT' else stamp
                sets += sync.add_info(cam, ns(info_stamp), ('info', cam, ns(info_stamp)), now)
                sets += sync.add_image(cam, ns(stamp), ('image', cam, ns(stamp)), now)
        return sync, sets

    sync, sets = run(0.0)
    assert sets and all(s.missing == ['CAM_BACK_LEFT'] for s in sets)
    for s in sets:
        assert_consistent(s, 0.05)
    stats = sync.stats().cameras['CAM_BACK_LEFT']
    assert stats.missing_info == len(sets) == stats.missing_count and stats.info_starved
    # the images stopped waiting after the timeout: sets keep coming, no camera lags by more than two rounds
    assert sets[-1].stamp >= stamp_of(17, 5)

    tolerant, sets = run(0.002)
    assert len(sets) >= 19 and all(s.complete for s in sets)
    assert all(abs(s.frames['CAM_BACK_LEFT'].info[2] - s.frames['CAM_BACK_LEFT'].stamp_ns - 1_000_000) <= 1
               for s in sets)


def test_late_camera_info_is_waited_for_and_then_paired():
    sync = ApproximateTimeSync(CAMERAS)
    for k in range(3):
        for i, cam in enumerate(CAMERAS):
            stamp = stamp_of(k, i)
            sync.add_image(cam, ns(stamp), ('image', cam, ns(stamp)), stamp + LATENCY)
    assert sync.stats().cameras['CAM_FRONT'].awaiting_info == 3
    sets = []
    for k in range(3):  # infos 0.2 s late, still within the timeout
        for i, cam in enumerate(CAMERAS):
            stamp = stamp_of(k, i)
            sets += sync.add_info(cam, ns(stamp), ('info', cam, ns(stamp)), stamp + 0.2)
    assert len(sets) == 2 and all(s.complete for s in sets)
    for s in sets:
        assert_consistent(s, 0.05)


def test_a_camera_info_published_once_serves_every_image_with_an_unbounded_info_slop():
    sync = ApproximateTimeSync(CAMERAS, info_slop=math.inf)
    for cam in CAMERAS:
        sync.add_info(cam, 0, ('K', cam), T0)
    sets = []
    for k in range(10):
        for i, cam in enumerate(CAMERAS):
            stamp = stamp_of(k, i)
            sets += sync.add_image(cam, ns(stamp), ('image', cam, ns(stamp)), stamp + LATENCY)
    assert len(sets) >= 9 and all(s.complete for s in sets)
    assert all(f.info == ('K', name) for s in sets for name, f in s.frames.items())


# --------------------------------------------------------------------------------------------- threads
def _thread_inputs(frames):
    rng = random.Random(11)
    return {cam: [(stamp_of(k, i), rng.random() < 0.5) for k in range(frames)] for i, cam in enumerate(CAMERAS)}


def test_cameras_fed_from_several_threads_give_the_same_consistent_sets():
    frames = 150
    inputs = _thread_inputs(frames)
    reference = ApproximateTimeSync(CAMERAS, queue_size=256)
    expected = []
    for k in range(frames):
        for cam in CAMERAS:
            stamp, info_first = inputs[cam][k]
            expected += feed(reference, cam, stamp, 0.0, info_first)

    sync = ApproximateTimeSync(CAMERAS, queue_size=256)
    results: list[CameraSet] = []
    barrier = threading.Barrier(len(CAMERAS))
    errors = []

    def worker(cam):
        try:
            barrier.wait()
            for stamp, info_first in inputs[cam]:
                results.extend(feed(sync, cam, stamp, 0.0, info_first))
                sync.stats()  # readers too
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(cam,)) for cam in CAMERAS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    for s in results:
        assert_consistent(s, 0.05)
    key = (lambda s: tuple((c, f.stamp_ns) for c, f in s.frames.items()))
    assert sorted(map(key, results)) == sorted(map(key, expected))
    assert len(expected) >= frames - 1
    used = [(c, f.stamp_ns) for s in results for c, f in s.frames.items()]
    assert len(used) == len(set(used))  # no frame goes out twice


# --------------------------------------------------------------------------------------------- brute-force reference
def brute_force_sets(streams: list[list[int]], slop_ns: int, age_penalty: Fraction) -> list[tuple[int, ...]]:
    """message_filters' sets by exhaustive search, offline, on whole streams of integer nanosecond stamps.

    While every camera has frames left: if the heads span more than the slop, the earliest head is discarded.
    Otherwise the pivot is the latest head (the last camera on a tie), and the set is, among all combinations of
    one remaining frame per camera that contain the pivot, the one of least (1 + age_penalty) * end - start (then
    the earliest start, then the earliest frames). Frames up to those of the set are consumed.
    """
    n = len(streams)
    heads = [0] * n
    sets = []
    while all(h < len(s) for h, s in zip(heads, streams)):
        hs = [s[h] for h, s in zip(heads, streams)]
        lo, hi = min(hs), max(hs)
        if hi - lo > slop_ns:
            heads[hs.index(lo)] += 1
            continue
        pivot = max(i for i in range(n) if hs[i] == hi)
        limit = hi + (hi - lo)  # no frame later than this can beat the heads themselves
        choices = [[heads[i]] if i == pivot else
                   [j for j in range(heads[i], len(streams[i])) if streams[i][j] <= limit] for i in range(n)]
        k = 1 + age_penalty

        def key(combo):
            st = tuple(streams[i][j] for i, j in enumerate(combo))
            return (k * max(st) - min(st), min(st), st)

        best = min(product(*choices), key=key)
        sets.append(tuple(streams[i][j] for i, j in enumerate(best)))
        heads = [j + 1 for j in best]
    return sets


def _random_streams(rng: random.Random, n: int, rounds: int, grid: float = 0.0) -> list[list[float]]:
    """Rounds 100 ms apart with per-camera offsets, jitter, lost frames and strays; on a `grid` (s) if given."""
    streams = []
    for _ in range(n):
        offset = rng.uniform(0.0, 0.06)
        stamps = [0.1 * r + offset + rng.uniform(-0.02, 0.02) for r in range(rounds) if rng.random() > 0.15]
        stamps += [rng.uniform(0.0, 0.1 * rounds) for _ in range(rng.randint(0, 2))]  # strays
        if grid:  # many equal stamps and equal costs: the tie rules count
            stamps = [round(s / grid) * grid for s in stamps]
        stamps = sorted({round((T0 + s) * 1e9) for s in stamps})
        streams.append([s / 1e9 for s in stamps])
    return streams


@pytest.mark.parametrize('age_penalty, grid', [('0', 0.0), ('0.1', 0.0), ('0', 0.01), ('0.1', 0.01)])
def test_sets_equal_a_brute_force_search_on_random_streams(age_penalty, grid):
    rng = random.Random(2024 + len(age_penalty) + int(grid * 100))
    sentinel = T0 + 1000.0  # every stream ends far in the future, so every real set is decided
    checked = 0
    for case in range(150):
        n = rng.randint(2, 4)
        slop = rng.choice([0.02, 0.05, 0.1, math.inf])
        streams = _random_streams(rng, n, rng.randint(4, 10), grid)
        names = [f'C{i}' for i in range(n)]
        sync = ApproximateTimeSync(names, slop=slop, queue_size=1000, age_penalty=float(age_penalty))
        pending = [list(s) + [sentinel] for s in streams]
        got = []
        while any(pending):  # a random interleaving of the cameras, each in stamp order
            i = rng.choice([j for j in range(n) if pending[j]])
            stamp = pending[i].pop(0)
            for s in feed(sync, names[i], stamp, 0.0, info_first=rng.random() < 0.5):
                assert s.complete
                got.append(tuple(f.stamp_ns for f in s.frames.values()))
        streams_ns = [[ns(t) for t in s] + [ns(sentinel)] for s in streams]
        slop_ns = 1 << 62 if math.isinf(slop) else ns(slop)
        expected = brute_force_sets(streams_ns, slop_ns, Fraction(age_penalty))
        real = round(sentinel * 1e9)
        got = [s for s in got if real not in s]
        expected = [s for s in expected if real not in s]
        assert got == expected, f'case {case}: streams {streams}, slop {slop}'
        checked += len(expected)
    assert checked > 300  # the streams made plenty of sets


# --------------------------------------------------------------------------------------------- cost
def _work_per_message(n: int, age_penalty: float, rounds: int = 120) -> float:
    """Queue heads the search reads per message, on nuScenes-like rounds of n cameras with 3 ms of jitter."""
    cams = [f'CAM_{i}' for i in range(n)]
    offsets = [0.042 * i / (n - 1) for i in range(n)]
    rng = random.Random(n)
    sync = ApproximateTimeSync(cams, age_penalty=age_penalty)
    sets = 0
    for k in range(rounds):
        for i, cam in enumerate(cams):
            stamp = stamp_of(k, i, offsets) + rng.uniform(-0.003, 0.003)
            sets += len(feed(sync, cam, stamp, stamp + LATENCY))
    assert sets >= rounds - 2
    return sync.comparisons / (rounds * n)


@pytest.mark.parametrize('age_penalty', [0.1, 0.0])  # 0: no early publishing, the longest sweeps
def test_search_work_grows_at_most_linearly_with_the_number_of_cameras(age_penalty):
    six, twelve = _work_per_message(6, age_penalty), _work_per_message(12, age_penalty)
    # Twice the cameras: at most twice the heads read per message (message_filters' Python synchroniser tries
    # every combination of queued messages: queue_size ** cameras).
    assert twelve <= 2 * six, (six, twelve)
    assert twelve <= 10, (six, twelve)  # a few reads per message: a set of n cameras costs O(n)


# --------------------------------------------------------------------------------------------- input checks
def test_bad_arguments_get_a_clear_error():
    with pytest.raises(ValueError, match='unknown camera'):
        ApproximateTimeSync(CAMERAS).add_image('CAM_TOP', 1, None, 1.0)
    for seconds in (1.5, math.nan, True):  # float seconds would round: stamps are integer nanoseconds
        with pytest.raises(ValueError, match='must be integer nanoseconds'):
            ApproximateTimeSync(CAMERAS).add_info('CAM_FRONT', seconds, None, 1.0)
    with pytest.raises(ValueError, match='unique'):
        ApproximateTimeSync(['A', 'A'])
    with pytest.raises(ValueError, match='queue_size'):
        ApproximateTimeSync(CAMERAS, queue_size=0)
    with pytest.raises(ValueError, match='slop'):
        ApproximateTimeSync(CAMERAS, slop=-0.1)
    with pytest.raises(ValueError, match='timeout'):
        ApproximateTimeSync(CAMERAS).timeout = 0.0


def test_slop_and_timeout_change_at_runtime():
    sync = ApproximateTimeSync(['A', 'B'], slop=0.05, timeout=0.5)
    sync.slop, sync.timeout = 0.01, 2.0
    assert (sync.slop, sync.timeout) == (0.01, 2.0)
    sets = []
    for k in range(10):  # 20 ms apart: beyond the new slop
        sets += feed(sync, 'A', T0 + 0.1 * k, T0 + 0.1 * k)
        sets += feed(sync, 'B', T0 + 0.1 * k + 0.02, T0 + 0.1 * k + 0.02)
    assert sets == []
    sync.slop = 0.05
    for k in range(10, 20):
        sets += feed(sync, 'A', T0 + 0.1 * k, T0 + 0.1 * k)
        sets += feed(sync, 'B', T0 + 0.1 * k + 0.02, T0 + 0.1 * k + 0.02)
    assert len(sets) >= 9 and all(s.complete for s in sets)


def test_the_last_set_goes_out_after_the_timeout_when_the_whole_rig_falls_quiet():
    sync = ApproximateTimeSync(['a', 'b', 'c'], slop=0.05, timeout=0.3)
    out = []
    for cam, dt in zip('abc', (0.0, 0.01, 0.02)):
        sync.add_info(cam, ns(10.0 + dt), f'info-{cam}', now=100.0)
        out += sync.add_image(cam, ns(10.0 + dt), f'img-{cam}', now=100.0)
    out += sync.poll(now=100.2)
    assert out == []  # within the timeout the set waits to be proven best, as message_filters does
    out += sync.poll(now=100.4)
    assert len(out) == 1 and out[0].complete and out[0].stamp == pytest.approx(10.02)
    assert sync.poll(now=101.0) == []
