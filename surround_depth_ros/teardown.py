"""A bounded ROS 2 teardown: a tool whose work is done exits even when the DDS participant's deletion hangs.

Fast DDS 3.2's TCP transport (``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``, which large images need) can deadlock in
``TCPChannelResourceBasic::disconnect`` while the participant is deleted, when a read on the channel never completes
(eProsima/Fast-DDS#6066, fixed upstream after the release the wheels carry). Seen here: ``replay`` stuck in
``destroy_node`` for 20 minutes after publishing everything, and a node refused at start stuck after its error line.
:func:`bounded_teardown` runs the teardown in order as before; past ``seconds`` it prints one warning and ends the
process with the status it would have had (``os._exit``: the sockets close with the process, and peers drop the
participant as they do for any process that ends).

:func:`stop_on_signals` bounds the node's whole way out the same way, from the stop request on: SIGINT and SIGTERM
are received by a thread of their own (``sigwait``, with both signals blocked in every other thread), so a stop
request is seen even while the main thread sits in a C call that never returns to the interpreter (where a Python
signal handler would never run); past ``seconds`` after it, every thread's stack goes to stderr (where it hung)
and the process ends with its status. Seen once on Jazzy wheels: a node under load that stayed up 30 s after two
SIGINTs without a line.

:func:`exit_process` ends a program whose teardown is done without the interpreter's finalisation and the C++
static destructors that run after it, where no Python watchdog can run any more. Seen on Jazzy wheels: a node
refused at start printed its error, finished its bounded teardown, and was still up 120 s later.
"""
from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, NoReturn

__all__ = ['bounded_teardown', 'stop_on_signals', 'exit_process', 'TEARDOWN_SECONDS', 'STOP_SECONDS']

TEARDOWN_SECONDS = 15.0
STOP_SECONDS = 25.0  # from the stop request to the end of the process, the teardown's bound included
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def bounded_teardown(tool: str, status: int, seconds: float = TEARDOWN_SECONDS,
                     final_words: str | None = None) -> Iterator[None]:
    """Run the ``with`` block (``destroy_node``, ``rclpy.try_shutdown``) with a watchdog: if it has not finished
    after ``seconds``, print ``final_words`` (stdout, what the tool would have printed after it), one warning
    (stderr), and exit with ``status``."""
    if seconds == float('inf'):
        yield
        return
    done = threading.Event()

    def watchdog() -> None:
        if done.wait(seconds):
            return
        if final_words:
            print(final_words, flush=True)
        print(f'[{tool}] warning: the DDS teardown did not finish within {seconds:g} s (a Fast DDS TCP transport '
              f'deadlock, eProsima/Fast-DDS#6066); exiting without it', file=sys.stderr, flush=True)
        os._exit(status)

    threading.Thread(target=watchdog, name=f'{tool}_teardown_watchdog', daemon=True).start()
    try:
        yield
    finally:
        done.set()


def stop_on_signals(stop: threading.Event, tool: str, status: int = 0, seconds: float = STOP_SECONDS
                    ) -> threading.Event:
    """SIGINT and SIGTERM set ``stop`` (module docstring); returns the event the caller sets once its clean-up is
    done. Call it before any other thread starts: threads inherit the blocked signals from the one that starts
    them. Where ``signal.sigwait`` does not exist, plain Python handlers set ``stop`` and nothing is bounded."""
    finished = threading.Event()
    if not hasattr(signal, 'sigwait'):
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda *_: stop.set())
        return finished
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def receive() -> None:
        signal.sigwait(STOP_SIGNALS)
        stop.set()
        threading.Thread(target=_bound, name=f'{tool}_stop_watchdog', daemon=True).start()
        while True:  # a second Ctrl-C (ros2 launch sends its own after the terminal's) changes nothing
            signal.sigwait(STOP_SIGNALS)
            stop.set()

    def _bound() -> None:
        if finished.wait(seconds):
            return
        print(f'[{tool}] warning: still running {seconds:g} s after the stop request; where each thread was:',
              file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        print(f'[{tool}] exiting without the rest of the clean-up', file=sys.stderr, flush=True)
        os._exit(status)

    threading.Thread(target=receive, name=f'{tool}_signals', daemon=True).start()
    return finished


def exit_process(status: int) -> NoReturn:
    """End the process with ``status`` once its ROS 2 teardown is done (module docstring): Python's and C's
    buffered output flushed (rcutils logs through C stdio), then ``os._exit``. ``atexit`` handlers do not run:
    call it only where nothing is left to write."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing more can be said there
            pass
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask (not a POSIX system)
        pass
    os._exit(status)
