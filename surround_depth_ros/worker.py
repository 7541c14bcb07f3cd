"""The inference worker: one thread fed through a slot that keeps only the newest camera set (no rclpy).

Under overload a real-time node must not queue work it cannot do: latency would grow without bound and so would
memory. The slot holds at most ``capacity`` sets (1 by default); a new set pushes out the oldest waiting one, which
is counted as dropped. The executor's callbacks only ever call :meth:`LatestSlot.put`, which never blocks on
inference.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable, Generic, TypeVar

__all__ = ['LatestSlot', 'InferenceWorker']

T = TypeVar('T')


class LatestSlot(Generic[T]):
    """A bounded hand-over that keeps the newest items and counts what it drops."""

    def __init__(self, capacity: int = 1):
        if capacity < 1:
            raise ValueError(f'capacity must be at least 1, got {capacity}')
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.accepted = 0
        self.max_depth = 0

    def put(self, item: T) -> None:
        with self._cond:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.accepted += 1
            self.max_depth = max(self.max_depth, len(self._items))
            self._cond.notify()

    def take(self, timeout: float | None = None) -> T | None:
        """The oldest waiting item, waiting up to ``timeout`` seconds; None when closed or timed out."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            return self._items.popleft()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class InferenceWorker(Generic[T]):
    """Runs ``process(item)`` for each item taken from a :class:`LatestSlot`, on a daemon thread of its own or, with
    ``start=False``, in the thread that calls :meth:`run` (the node runs inference in the main thread: see there).

    An exception in ``process`` is logged and counted (``errors``) and the worker goes on with the next set: one
    bad frame never stops the node.
    """

    def __init__(self, process: Callable[[T], Any], capacity: int = 1, name: str = 'surround_depth_inference',
                 log_error: Callable[[str], None] | None = None, start: bool = True):
        self.slot: LatestSlot[T] = LatestSlot(capacity)
        self._process = process
        self._log_error = log_error or logging.getLogger('surround_depth.worker').error
        self._stop = threading.Event()
        self.processed = 0
        self.errors = 0
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self.run, name=name, daemon=True)
            self._thread.start()

    def submit(self, item: T) -> None:
        self.slot.put(item)

    def run(self, keep_going: Callable[[], bool] = lambda: True) -> None:
        """The loop: until :meth:`stop` is called or ``keep_going()`` turns False (checked every 0.1 s)."""
        while not self._stop.is_set() and keep_going():
            item = self.slot.take(timeout=0.1)
            if item is None:
                continue
            try:
                self._process(item)
                self.processed += 1
            except Exception as exc:  # noqa: BLE001 - one bad set must not end the node
                self.errors += 1
                self._log_error(f'inference on a camera set failed ({type(exc).__name__}: {exc}); skipped')

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.slot.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
