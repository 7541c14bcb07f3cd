"""A bounded ROS 2 teardown: a tool whose work is done exits even when the DDS participant's deletion hangs.

Fast DDS 3.2's TCP transport (``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``, which large images need) can deadlock in
``TCPChannelResourceBasic::disconnect`` while the participant is deleted, when a read on the channel never completes
(eProsima/Fast-DDS#6066, fixed upstream after the release the wheels carry). Seen here: ``replay`` stuck in
``destroy_node`` for 20 minutes after publishing everything, and a node refused at start stuck after its error line.
:func:`bounded_teardown` runs the teardown in order as before; past ``seconds`` it prints one warning and ends the
process with the status it would have had (``os._exit``: the sockets close with the process, and peers drop the
participant as they do for any process that ends).
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ['bounded_teardown', 'TEARDOWN_SECONDS']

TEARDOWN_SECONDS = 15.0


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
