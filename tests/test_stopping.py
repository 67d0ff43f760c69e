"""The stop flag's signal handler: it may run inside itself, and must never wait there."""

import subprocess
import sys
import textwrap

# A second signal can land at any line of the handler, including the lines of whatever it calls: a
# trace hook delivers one there, once per line, and the process must still finish. (With a
# threading.Event as the flag, the second handler waited for ever on the lock the first held in set().)
NESTED_SIGNALS = textwrap.dedent("""
    import signal, sys
    from lenet_bench import stopping

    lines = []
    def deliver_nested(frame, event, arg):
        if event == "line" and not lines:
            lines.append(frame.f_code.co_name)
            try:
                stopping._on_signal(signal.SIGTERM, None)
            finally:
                lines.pop()
        return deliver_nested

    count = 0
    def trace(frame, event, arg):
        global count
        count += 1
        return deliver_nested

    with stopping.stops_as_flag():
        sys.settrace(trace)
        stopping._on_signal(signal.SIGINT, None)
        sys.settrace(None)
        assert stopping.requested()
        print("calls traced:", count, flush=True)
""")


def test_a_signal_arriving_anywhere_inside_the_stop_handler_neither_hangs_nor_loses_the_stop():
    done = subprocess.run([sys.executable, "-c", NESTED_SIGNALS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "calls traced:" in done.stdout
    assert done.stderr.count("finished runs are kept") == 1, done.stderr  # one first stop, the rest "already"
