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
