"""A teardown that hangs (as Fast DDS's TCP transport can, deleting a participant) ends the process after the grace
period with the status the tool would have had and the words it would have printed; one that finishes changes
nothing."""
from __future__ import annotations

import subprocess
import sys
import time

SCRIPT = """
import sys, threading
from surround_depth_ros.teardown import bounded_teardown
with bounded_teardown('tool', status=3, seconds=1.0, final_words='[tool] published 7 messages'):
    if sys.argv[1] == 'hang':
        threading.Event().wait()
print('after the teardown', flush=True)
sys.exit(0)
"""


def _run(mode: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, '-c', SCRIPT, mode], capture_output=True, text=True, timeout=60)
    return result, time.monotonic() - start


def test_a_hung_teardown_ends_the_process_with_its_status_and_final_words_after_the_grace_period():
    result, seconds = _run('hang')
    assert result.returncode == 3 and seconds < 30
    assert result.stdout == '[tool] published 7 messages\n'
    assert 'warning: the DDS teardown did not finish within 1 s' in result.stderr


def test_a_teardown_that_finishes_lets_the_tool_go_on_as_before():
    result, _ = _run('finish')
    assert result.returncode == 0 and result.stdout == 'after the teardown\n' and result.stderr == ''


def test_an_unbounded_teardown_has_no_watchdog():
    import threading

    from surround_depth_ros.teardown import bounded_teardown

    before = threading.active_count()
    with bounded_teardown('tool', status=1, seconds=float('inf')):
        assert threading.active_count() == before


STOP_SCRIPT = """
import sys, threading
from surround_depth_ros.teardown import stop_on_signals
stop = threading.Event()
finished = stop_on_signals(stop, 'probe', status=0, seconds=2.0)
print('ready', flush=True)
if sys.argv[1] == 'hang':
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()  # a C call that never returns to the interpreter: no Python signal handler would run here
while not stop.wait(0.05):
    pass
print('stopping', flush=True)
finished.set()
sys.exit(0)
"""


def _stopped(mode: str, signals: int) -> tuple[int, str, str, float]:
    import signal

    proc = subprocess.Popen([sys.executable, '-c', STOP_SCRIPT, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == 'ready\n'
    start = time.monotonic()
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err, time.monotonic() - start


def test_a_stop_request_reaches_a_main_thread_stuck_in_a_c_call_and_the_process_ends_saying_where():
    code, out, err, seconds = _stopped('hang', signals=2)
    assert code == 0 and seconds < 30 and out == ''
    assert '[probe] warning: still running 2 s after the stop request; where each thread was:' in err
    assert 'File "<string>", line 10 in <module>' in err  # the main thread's stack: the second lock.acquire()
    assert err.rstrip().endswith('[probe] exiting without the rest of the clean-up')


def test_a_process_that_stops_when_asked_ends_as_before_on_one_or_two_sigints():
    for signals in (1, 2):
        code, out, err, _ = _stopped('finish', signals)
        assert (code, out, err) == (0, 'stopping\n', '')


EXIT_SCRIPT = """
import atexit, ctypes, sys, threading
from surround_depth_ros.teardown import exit_process
atexit.register(threading.Event().wait)  # a finalisation that never ends, as Fast DDS's can
print('python, no newline', end='')
libc = ctypes.CDLL(None)
libc.fputs(b'C stdio, buffered in a pipe', ctypes.c_void_p.in_dll(libc, 'stdout'))
exit_process(5)
"""


def test_exit_process_ends_with_its_status_and_all_output_before_a_finalisation_that_would_hang():
    import os

    env = {k: v for k, v in os.environ.items() if k != 'PYTHONUNBUFFERED'}  # buffered, as a pipe makes it
    start = time.monotonic()
    result = subprocess.run([sys.executable, '-c', EXIT_SCRIPT], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 5 and time.monotonic() - start < 30
    assert 'python, no newline' in result.stdout and 'C stdio, buffered in a pipe' in result.stdout
