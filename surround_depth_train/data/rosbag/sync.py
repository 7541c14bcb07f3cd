"""Approximate-time synchronisation of N cameras (image + CameraInfo each) that keeps going when a camera dies.

Sets follow message_filters' C++ ``ApproximateTime`` policy (``message_filters::sync_policies::ApproximateTime``):
given the same stamps it forms the same sets. On top of it come what the rig needs and message_filters lacks:
partial sets past a timeout, image/CameraInfo pairing, bag-loop handling and statistics. message_filters' *Python*
``ApproximateTimeSynchronizer`` is a different algorithm, not a cheaper version of this one: on every message it
looks greedily for any combination of queued messages that includes the new one and spans *less than* ``slop``,
and emits the first it finds, so it can emit other sets (it never weighs one set against a better later one), and
a span of exactly ``slop`` is no set there while it is one here and in the C++ policy.

**Stamps are integer nanoseconds** end to end (``messages.stamp_to_ns(msg.header.stamp)``, as the C++ policy
compares ``rclcpp::Time``): float seconds would round a stamp of today's epoch by up to ~400 ns and move a span that
is exactly ``slop`` to the other side of the boundary. ``slop`` and the other settings stay in seconds (converted to
ns once); ``now``, the node's clock, is in seconds (it only measures timeouts).

**Which set goes out** (as message_filters). Each camera has a queue of frames in stamp order. While every queue
holds a frame, the *pivot* is the latest of the queue heads: the next set must contain it. Among the sets of one
frame per camera that contain the pivot, the one with the smallest ``cost = (1 + age_penalty) * end - start``
(``start``/``end``: earliest/latest stamp in the set) wins; with ``age_penalty = 0`` that is the smallest span, and
ties go to the older set. The search sweeps a window over the queues: it takes the heads as a candidate, then
repeatedly passes the earliest head, comparing each new set of heads with the candidate, until the pivot itself is
the earliest head. A set goes out as soon as it is provably optimal given what has arrived (no later frame can
make a better one), so the output depends only on the stamps, never on the order in which the messages arrived.
When the heads of a fresh search span more than ``slop``, the earliest head is discarded (no set with it can meet
the slop). Frames up to and including those of an emitted set are discarded; later ones stay. A queue that
grows past ``queue_size`` drops its oldest frame (``dropped``), and that camera may not be the pivot until the
search has moved past it (a dropped frame could have made a better set). Each step of the sweep reads one head
per camera, so the work per message is linear in the number of cameras. ``age_penalty`` defaults to message_filters' 0.1: it favours
the older set slightly, so sets are proven sooner; with nuScenes' stamps (offsets 0..42 ms at 12 Hz) a set goes out
when the first camera's next image arrives (with 0, when the second one's does).

**Partial sets.** A camera is *silent* when no image of it was accepted for longer than ``timeout`` on the node's
clock (``now``, sim time under replay) while another camera was heard within the timeout. A silent camera leaves
the search: the pending candidate goes out first if only that camera's missing next frame held it back, its
queue is cleared, and the other cameras' sets go out with ``missing`` naming it (``missing_count`` counts them).
Its next image brings it back and full sets resume. After the whole rig was quiet for longer than the timeout
(startup, a paused bag, a clock that jumped forward), every camera gets a fresh timeout to show up; a set still
waiting to be proven best when the rig fell quiet goes out after that timeout (nothing can come that beats it).

**Image and CameraInfo** of one camera are paired by stamp: the CameraInfo whose stamp is closest to the image's,
within ``info_slop`` (0: exact match, as a camera driver stamps both alike; a large ``info_slop`` uses the latest
CameraInfo of a driver that publishes it rarely). The node needs K, so a frame never goes out without one. The two
topics arrive in either order, so an image waits (in order, bounded by ``queue_size``) for its CameraInfo before it
joins the search. If none has come after ``timeout``, the image joins without one and the camera is *info-starved*:
its later images join at once (no added latency for the other cameras) until a CameraInfo pairs again. A frame that
has no CameraInfo when its set goes out is left out of the set: the camera is listed in ``missing`` and counted in
``missing_info``. A set left with no frame at all is not emitted.

**Time going backwards.** Images of a camera must have increasing stamps. An image stamped at or before its
camera's previous one is dropped and counted (``out_of_order``), unless it is more than ``jump_threshold`` older:
then it may be the start of a bag loop and is held aside. Once every camera that is not silent has jumped back,
the queues are reset (``resets``) and the held images are replayed into the fresh state; if instead the camera
goes on forward, its held images are dropped as out of order. The node's clock going back by more than
``jump_threshold`` also resets (under replay the clock loops with the bag, so one loop may count one or two resets);
smaller steps back are ignored, since callbacks on several threads read the clock before they take the lock.

**Threads.** All methods are thread-safe (one ``threading.Lock``); nothing calls back into user code: the sets are
returned, for the caller to hand on outside the lock.
"""
from __future__ import annotations

import heapq
import math
import numbers
import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Sequence

__all__ = ['CameraFrame', 'CameraSet', 'CameraStats', 'SyncStats', 'ApproximateTimeSync']

_UNBOUNDED_NS = 1 << 62  # slop = inf
_NO_INFO = object()


@dataclass
class CameraFrame:
    """One camera's paired input in a set."""

    camera: str
    stamp_ns: int    #: the image's header stamp in integer nanoseconds, as given to ``add_image``
    image: Any       #: the payload given to ``add_image`` (a ROS message in the node)
    info: Any        #: the payload given to ``add_info`` paired with the image (always present: see the module doc)
    received: float  #: node-clock time the image arrived (``now`` of ``add_image``)

    @property
    def stamp(self) -> float:
        """The stamp in seconds (for display and for code that works in seconds; the sets are formed on ns)."""
        return self.stamp_ns * 1e-9


@dataclass
class CameraSet:
    """A synchronised set: the frames of the cameras present, and the cameras left out."""

    stamp_ns: int                   #: the latest image stamp among ``frames``, integer nanoseconds
    frames: dict[str, CameraFrame]  #: present cameras, in the configured camera order
    missing: list[str]              #: cameras left out (silent past the timeout, or without CameraInfo), in order

    @property
    def stamp(self) -> float:
        """``stamp_ns`` in seconds."""
        return self.stamp_ns * 1e-9

    @property
    def complete(self) -> bool:
        """True when every configured camera is present."""
        return not self.missing

    @property
    def span_ns(self) -> int:
        """Nanoseconds between the earliest and the latest stamp of the set (at most the slop)."""
        stamps = [f.stamp_ns for f in self.frames.values()]
        return max(stamps) - min(stamps)

    @property
    def span(self) -> float:
        """``span_ns`` in seconds."""
        return self.span_ns * 1e-9


@dataclass
class CameraStats:
    """Per-camera counters and gauges, for /diagnostics."""

    rate_hz: float               #: accepted images per second over the last ``rate_window`` s of the node's clock
    last_stamp: float | None     #: stamp of the newest accepted image (None: none yet)
    last_received: float | None  #: node-clock time it arrived
    staleness: float | None      #: now - last_received (None: no image yet)
    out_of_order: int            #: images dropped for a stamp not after the camera's previous one
    dropped: int                 #: frames dropped because a queue (search or waiting for CameraInfo) was full
    missing_count: int           #: emitted sets this camera was missing from
    missing_info: int            #: frames left out of their set for want of a CameraInfo
    silent: bool = False         #: silent past the timeout: sets go out without it
    info_starved: bool = False   #: its images stopped waiting for CameraInfo (none paired within the timeout)
    queued: int = 0              #: frames in its search queue (at most queue_size)
    awaiting_info: int = 0       #: images waiting for their CameraInfo (at most queue_size)


@dataclass
class SyncStats:
    """A snapshot of the synchroniser's counters."""

    sets_emitted: int                 #: all sets emitted, partial ones included
    partial_sets: int                 #: sets emitted with at least one camera missing
    resets: int                       #: queue resets (bag loop, clock jump, ``reset()``)
    cameras: dict[str, CameraStats]   #: per camera, in the configured order


class _Frame:
    __slots__ = ('stamp_ns', 'image', 'received', 'info', 'paired')

    def __init__(self, stamp_ns: int, image: Any, received: float) -> None:
        self.stamp_ns, self.image, self.received = stamp_ns, image, received
        self.info: Any = None
        self.paired = False


class _Lane:
    """One camera's state."""

    def __init__(self, name: str, queue_size: int) -> None:
        self.name = name
        # Frames in the search, oldest first; those before `cursor` are the ones the running sweep has passed
        # (message_filters' "past"); while a candidate exists it is every active lane's queue[0].
        self.queue: list[_Frame] = []
        self.cursor = 0
        self.awaiting: deque[_Frame] = deque()  # images waiting for their CameraInfo, in stamp order
        self.infos: deque[tuple[int, Any]] = deque(maxlen=queue_size)
        self.held: list[_Frame] = []  # images stamped far before the previous one: a bag loop starting, or a glitch
        self.order_ns: int | None = None  # stamp of the last accepted image (cleared by a reset)
        self.last_stamp: float | None = None
        self.last_received: float | None = None
        self.receipts: deque[float] = deque(maxlen=4096)
        self.active = True
        self.info_starved = False
        self.has_dropped = False
        self.out_of_order = self.dropped = self.missing_count = self.missing_info = 0


def _to_ns(seconds: float) -> int:
    return _UNBOUNDED_NS if math.isinf(seconds) else round(seconds * 1e9)


def _check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f'{name} must be >= 0 seconds, got {value}')
    return value


class ApproximateTimeSync:
    """Approximate-time synchroniser of the images (and CameraInfos) of ``cameras``; see the module doc.

    Args:
        cameras: camera names, in the order the sets list them.
        slop: the largest spread of image stamps inside a set, seconds.
        queue_size: frames kept per camera (search queue, and separately images waiting for CameraInfo).
        timeout: seconds of the node's clock after which a camera without images is left out of the sets, and an
            image without CameraInfo stops waiting for it.
        info_slop: largest stamp difference between an image and the CameraInfo paired with it, seconds.
        age_penalty: message_filters' age penalty (>= 0): the cost of a set is ``(1 + age_penalty) * end - start``.
        jump_threshold: seconds a stamp (or the clock) must go back to count as a jump (a bag loop), not a glitch.
        rate_window: seconds of the node's clock over which ``rate_hz`` is measured.
    """

    def __init__(self, cameras: Sequence[str], *, slop: float = 0.05, queue_size: int = 10, timeout: float = 0.5,
                 info_slop: float = 0.0, age_penalty: float = 0.1, jump_threshold: float = 1.0,
                 rate_window: float = 2.0) -> None:
        names = [str(c) for c in cameras]
        if not names:
            raise ValueError('cameras is empty: give the names of the cameras to synchronise')
        if len(set(names)) != len(names):
            raise ValueError(f'camera names must be unique, got {names}')
        if int(queue_size) < 1:
            raise ValueError(f'queue_size must be >= 1, got {queue_size}')
        if not float(timeout) > 0.0:
            raise ValueError(f'timeout must be > 0 seconds, got {timeout}')
        if not float(jump_threshold) > 0.0 or not float(rate_window) > 0.0:
            raise ValueError(f'jump_threshold and rate_window must be > 0 seconds, got {jump_threshold}, '
                             f'{rate_window}')
        k = Fraction(1) + Fraction(_check_nonnegative('age_penalty', age_penalty)).limit_denominator(1_000_000)
        # Costs are compared as (e1 - e2) * kn vs (s1 - s2) * kd in integer nanoseconds: exact, like ROS time.
        self._kn, self._kd = k.numerator, k.denominator
        self._lock = threading.Lock()
        self._cameras = tuple(names)
        self._queue_size = int(queue_size)
        self._lanes = [_Lane(name, self._queue_size) for name in names]
        self._by_name = {lane.name: lane for lane in self._lanes}
        self._active = list(self._lanes)
        self._slop = _check_nonnegative('slop', slop)
        self._slop_ns = _to_ns(self._slop)
        self._info_slop = _check_nonnegative('info_slop', info_slop)
        self._info_slop_ns = _to_ns(self._info_slop)
        self._timeout = float(timeout)
        self._jump = float(jump_threshold)
        self._jump_ns = _to_ns(self._jump)
        self._rate_window = float(rate_window)
        # search state: the pivot lane and its stamp, the candidate's start and end (nanoseconds)
        self._pivot: _Lane | None = None
        self._pivot_ns = self._cand_start = self._cand_end = 0
        self._last_now: float | None = None
        self._grace_start: float | None = None  # silence is measured from here at the earliest
        self._last_heard: float | None = None   # node-clock time of the newest accepted image of any camera
        self._sets_emitted = self._partial_sets = self._resets = 0
        self._comparisons = 0

    # ------------------------------------------------------------------------------------------- settings
    @property
    def cameras(self) -> tuple[str, ...]:
        return self._cameras

    @property
    def queue_size(self) -> int:
        return self._queue_size

    @property
    def slop(self) -> float:
        return self._slop

    @slop.setter
    def slop(self, value: float) -> None:
        value = _check_nonnegative('slop', value)
        with self._lock:
            self._slop, self._slop_ns = value, _to_ns(value)

    @property
    def timeout(self) -> float:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        if not float(value) > 0.0:
            raise ValueError(f'timeout must be > 0 seconds, got {value}')
        with self._lock:
            self._timeout = float(value)

    @property
    def info_slop(self) -> float:
        return self._info_slop

    @info_slop.setter
    def info_slop(self, value: float) -> None:
        value = _check_nonnegative('info_slop', value)
        with self._lock:
            self._info_slop, self._info_slop_ns = value, _to_ns(value)

    @property
    def comparisons(self) -> int:
        """Queue heads read by the set search so far: a count of its work (tests check it is linear in cameras)."""
        return self._comparisons

    # ------------------------------------------------------------------------------------------- public API
    def add_image(self, camera: str, stamp_ns: int, image: Any, now: float) -> list[CameraSet]:
        """Add one camera's image stamped ``stamp_ns`` (integer nanoseconds, e.g.
        ``messages.stamp_to_ns(msg.header.stamp)``) that arrived at ``now`` (node clock, s); return the sets due."""
        lane = self._lane(camera)
        stamp_ns = self._stamp_ns(camera, stamp_ns)
        out: list[CameraSet] = []
        with self._lock:
            now = self._advance_clock(float(now))
            self._accept(lane, _Frame(stamp_ns, image, now), now, out)
            self._housekeep(now, out)
        return out

    def add_info(self, camera: str, stamp_ns: int, info: Any, now: float) -> list[CameraSet]:
        """Add one camera's CameraInfo stamped ``stamp_ns`` (integer ns); return the sets due (an image may have
        waited for it)."""
        lane = self._lane(camera)
        stamp_ns = self._stamp_ns(camera, stamp_ns)
        out: list[CameraSet] = []
        with self._lock:
            now = self._advance_clock(float(now))
            lane.infos.append((stamp_ns, info))  # frames already in the search look it up when their set goes out
            self._resolve_awaiting(lane, now, out)
            self._housekeep(now, out)
        return out

    def poll(self, now: float) -> list[CameraSet]:
        """Apply the timeouts at ``now`` (call it from a timer): the partial sets due while a camera is silent."""
        out: list[CameraSet] = []
        with self._lock:
            now = self._advance_clock(float(now))
            self._housekeep(now, out)
        return out

    def stats(self, now: float | None = None) -> SyncStats:
        """A snapshot of the counters; staleness is measured at ``now`` (default: the latest ``now`` given)."""
        with self._lock:
            t = self._last_now if now is None else max(float(now), self._last_now or float(now))
            cameras = {}
            for lane in self._lanes:
                rate = 0.0
                if t is not None:
                    recent = [r for r in lane.receipts if r >= t - self._rate_window]
                    if len(recent) >= 2 and recent[-1] > recent[0]:
                        rate = (len(recent) - 1) / (recent[-1] - recent[0])
                staleness = None if lane.last_received is None or t is None else max(0.0, t - lane.last_received)
                cameras[lane.name] = CameraStats(
                    rate_hz=rate, last_stamp=lane.last_stamp, last_received=lane.last_received, staleness=staleness,
                    out_of_order=lane.out_of_order, dropped=lane.dropped, missing_count=lane.missing_count,
                    missing_info=lane.missing_info, silent=not lane.active, info_starved=lane.info_starved,
                    queued=len(lane.queue), awaiting_info=len(lane.awaiting))
            return SyncStats(sets_emitted=self._sets_emitted, partial_sets=self._partial_sets, resets=self._resets,
                             cameras=cameras)

    def reset(self) -> None:
        """Forget every queued frame and the clock (counted in ``resets``); counters and CameraInfos are kept."""
        with self._lock:
            self._clear(clock=True)
            self._last_now = self._grace_start = None
            self._resets += 1

    # ------------------------------------------------------------------------------------------- input checks
    def _lane(self, camera: str) -> _Lane:
        lane = self._by_name.get(camera)
        if lane is None:
            raise ValueError(f'unknown camera {camera!r}: the synchroniser was made for {list(self._cameras)}')
        return lane

    @staticmethod
    def _stamp_ns(camera: str, stamp_ns: int) -> int:
        # Float seconds would round epoch stamps by up to ~400 ns and move exact-slop boundaries: integers only.
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, numbers.Integral):
            raise ValueError(f'camera {camera!r}: stamp {stamp_ns!r} must be integer nanoseconds '
                             f'(messages.stamp_to_ns(msg.header.stamp)), not seconds')
        return int(stamp_ns)

    # ------------------------------------------------------------------------------------------- time
    def _advance_clock(self, now: float) -> float:
        if self._last_now is not None and now < self._last_now:
            if now >= self._last_now - self._jump:
                return self._last_now  # threads read the clock before taking the lock: not a jump
            self._last_now = now
            self._clear(clock=True)
            self._resets += 1
        self._last_now = now
        if self._grace_start is None:
            self._grace_start = now
        return now

    def _stale(self, lane: _Lane, now: float) -> bool:
        ref = self._grace_start if lane.last_received is None else max(lane.last_received, self._grace_start)
        return now - ref > self._timeout

    def _clear(self, *, clock: bool) -> None:
        """Empty every queue (a reset); with ``clock`` also forget receive times, since the clock itself jumped."""
        for lane in self._lanes:
            lane.queue.clear()
            lane.cursor = 0
            lane.awaiting.clear()
            lane.held.clear()
            lane.order_ns = None
            lane.has_dropped = lane.info_starved = False
            if clock:
                lane.last_received = None
                lane.receipts.clear()
                lane.active = True
        self._pivot = None
        self._active = [lane for lane in self._lanes if lane.active]
        if clock:
            self._grace_start, self._last_heard = self._last_now, None

    # ------------------------------------------------------------------------------------------- images in
    def _accept(self, lane: _Lane, frame: _Frame, now: float, out: list[CameraSet]) -> None:
        if lane.order_ns is not None and frame.stamp_ns <= lane.order_ns:
            if frame.stamp_ns >= lane.order_ns - self._jump_ns:
                lane.out_of_order += 1
                return
            lane.held.append(frame)
            if len(lane.held) > self._queue_size:
                lane.held.pop(0)
                lane.out_of_order += 1
            # a silent camera takes no part in the loop
            if all(other.held or self._stale(other, now) for other in self._lanes):
                self._loop_reset(now, out)
            return
        if lane.held:  # the camera went on forward: what it held was a glitch, not a loop
            lane.out_of_order += len(lane.held)
            lane.held.clear()
        self._admit(lane, frame, now, out)

    def _loop_reset(self, now: float, out: list[CameraSet]) -> None:
        held = [(lane, list(lane.held)) for lane in self._lanes]
        self._clear(clock=False)
        self._resets += 1
        for lane, frames in held:
            for frame in frames:
                self._admit(lane, frame, now, out)

    def _admit(self, lane: _Lane, frame: _Frame, now: float, out: list[CameraSet]) -> None:
        if self._last_heard is None or frame.received - self._last_heard > self._timeout:
            self._grace_start = frame.received  # the whole rig was quiet: every camera gets a fresh timeout
        self._last_heard = frame.received if self._last_heard is None else max(self._last_heard, frame.received)
        lane.order_ns, lane.last_stamp, lane.last_received = frame.stamp_ns, frame.stamp_ns * 1e-9, frame.received
        lane.receipts.append(frame.received)
        while lane.receipts and lane.receipts[0] < frame.received - self._rate_window:
            lane.receipts.popleft()
        if not lane.active:
            self._set_active(lane, True, out)
        lane.awaiting.append(frame)
        if len(lane.awaiting) > self._queue_size:
            lane.awaiting.popleft()
            lane.dropped += 1
        self._resolve_awaiting(lane, now, out)

    def _pair(self, lane: _Lane, frame: _Frame) -> bool:
        best, best_d = _NO_INFO, None
        for stamp_ns, info in lane.infos:
            d = abs(stamp_ns - frame.stamp_ns)
            if d <= self._info_slop_ns and (best_d is None or d <= best_d):  # closest; the newest on a tie
                best, best_d = info, d
        if best is _NO_INFO:
            return False
        frame.info, frame.paired = best, True
        lane.info_starved = False
        return True

    def _resolve_awaiting(self, lane: _Lane, now: float, out: list[CameraSet]) -> None:
        """Move images that have their CameraInfo (or waited the timeout for it) into the search, in order."""
        while lane.awaiting:
            frame = lane.awaiting[0]
            if not self._pair(lane, frame):
                if not lane.info_starved and now - frame.received <= self._timeout:
                    return
                lane.info_starved = True
            lane.awaiting.popleft()
            self._push(lane, frame, out)

    def _housekeep(self, now: float, out: list[CameraSet]) -> None:
        for lane in self._lanes:
            if lane.awaiting:
                self._resolve_awaiting(lane, now, out)
        stale = [self._stale(lane, now) for lane in self._lanes]
        if all(stale):
            # The whole rig is quiet (the stream ended or paused): nothing will come that could beat the candidate,
            # so it goes out now rather than with the next frame, whenever that comes. No camera is left out.
            if self._pivot is not None:
                self._publish(out)
            return
        changed = False
        for lane, silent in zip(self._lanes, stale):
            if lane.active == silent:
                self._set_active(lane, not silent, out)
                changed = True
        if changed:
            self._process(out)

    def _set_active(self, lane: _Lane, active: bool, out: list[CameraSet]) -> None:
        if not active and self._pivot is not None and lane.cursor >= len(lane.queue):
            # The candidate waits for this camera's next frame, which is not coming: it is the best set with it.
            self._publish(out)
        self._cancel_search()
        if not active:
            lane.queue.clear()
            lane.has_dropped = False
        lane.active = active
        self._active = [x for x in self._lanes if x.active]

    def _cancel_search(self) -> None:
        for lane in self._active:
            lane.cursor = 0
        self._pivot = None

    # ------------------------------------------------------------------------------------------- the search
    def _push(self, lane: _Lane, frame: _Frame, out: list[CameraSet]) -> None:
        if not lane.active:
            return
        was_exhausted = lane.cursor >= len(lane.queue)
        lane.queue.append(frame)
        if was_exhausted:
            self._process(out)
        if len(lane.queue) > self._queue_size:
            had_candidate = self._pivot is not None
            self._cancel_search()
            lane.queue.pop(0)
            lane.dropped += 1
            lane.has_dropped = True
            if had_candidate:
                self._process(out)

    def _heads(self, lanes: list[_Lane]) -> tuple[_Lane, int, _Lane, int]:
        """Earliest head (first lane on a tie) and latest head (last lane on a tie)."""
        self._comparisons += len(lanes)
        s_lane = e_lane = lanes[0]
        s_t = e_t = s_lane.queue[s_lane.cursor].stamp_ns
        for lane in lanes[1:]:
            t = lane.queue[lane.cursor].stamp_ns
            if t < s_t:
                s_lane, s_t = lane, t
            if t >= e_t:
                e_lane, e_t = lane, t
        return s_lane, s_t, e_lane, e_t

    def _process(self, out: list[CameraSet]) -> None:
        lanes = self._active
        kn, kd = self._kn, self._kd
        while lanes and all(lane.cursor < len(lane.queue) for lane in lanes):
            s_lane, s_t, e_lane, e_t = self._heads(lanes)
            single = s_lane is e_lane  # one camera left: every frame is its own set
            for lane in lanes:
                if lane is not e_lane or single:
                    lane.has_dropped = False  # no dropped frame of it could have beaten the frames it has now
            if self._pivot is None:
                if e_t - s_t > self._slop_ns or e_lane.has_dropped:
                    s_lane.queue.pop(0)  # no set with this frame can meet the slop (or the pivot is unreliable)
                    continue
                self._pivot, self._pivot_ns = e_lane, e_t
                self._cand_start, self._cand_end = s_t, e_t
            elif (e_t - self._cand_end) * kn < (s_t - self._cand_start) * kd:
                for lane in lanes:  # the heads are the better candidate; the frames passed can never be used
                    del lane.queue[:lane.cursor]
                    lane.cursor = 0
                self._cand_start, self._cand_end = s_t, e_t
            s_lane.cursor += 1
            if s_lane is self._pivot or (e_t - self._cand_end) * kn >= (self._pivot_ns - self._cand_start) * kd:
                # The sweep has passed the pivot, or any later set still holds [pivot, e_t], already too wide.
                self._publish(out)
            elif s_lane.cursor >= len(s_lane.queue):
                self._prove(lanes, out)

    def _prove(self, lanes: list[_Lane], out: list[CameraSet]) -> None:
        """Try to prove the candidate optimal before the exhausted queues refill; publish it if so.

        Sweeps on with every exhausted camera's next frame assumed at the pivot's stamp (the best case for a
        rival set). If even then no better set can appear, publish; if the optimistic sweep finds one, undo.
        The heads sit in a heap here, since this sweep may pass a frame of every camera on each call.
        """
        saved = [lane.cursor for lane in lanes]
        kn, kd, pivot_ns = self._kn, self._kd, self._pivot_ns
        heap = [(self._virtual_head(lane), i) for i, lane in enumerate(lanes)]
        heapq.heapify(heap)
        e_t = max(t for t, _ in heap)
        self._comparisons += len(lanes)
        step = len(lanes).bit_length()
        while True:
            s_t, i = heap[0]
            if (e_t - self._cand_end) * kn >= (pivot_ns - self._cand_start) * kd:
                self._publish(out)
                return
            if (e_t - self._cand_end) * kn < (s_t - self._cand_start) * kd:
                for lane, cursor in zip(lanes, saved):
                    lane.cursor = cursor
                return
            lane = lanes[i]
            lane.cursor += 1  # s_t < pivot here, so this camera is neither exhausted nor the pivot
            t = self._virtual_head(lane)
            e_t = max(e_t, t)
            heapq.heapreplace(heap, (t, i))
            self._comparisons += step

    def _virtual_head(self, lane: _Lane) -> int:
        if lane.cursor < len(lane.queue):
            return lane.queue[lane.cursor].stamp_ns
        return max(lane.queue[lane.cursor - 1].stamp_ns, self._pivot_ns)

    def _publish(self, out: list[CameraSet]) -> None:
        chosen = {}
        for lane in self._active:
            chosen[lane.name] = lane.queue.pop(0)
            lane.cursor = 0
        self._pivot = None
        frames: dict[str, CameraFrame] = {}
        missing: list[str] = []
        for lane in self._lanes:
            frame = chosen.get(lane.name)
            if frame is not None and (frame.paired or self._pair(lane, frame)):
                frames[lane.name] = CameraFrame(camera=lane.name, stamp_ns=frame.stamp_ns, image=frame.image,
                                                info=frame.info, received=frame.received)
                continue
            missing.append(lane.name)
            if frame is not None:
                lane.missing_info += 1
        if not frames:
            return
        for name in missing:
            self._by_name[name].missing_count += 1
        self._sets_emitted += 1
        self._partial_sets += bool(missing)
        out.append(CameraSet(stamp_ns=max(f.stamp_ns for f in frames.values()), frames=frames, missing=missing))
