"""The status line: redrawn in place on a terminal, whole lines now and then in a log file."""

import io

from backend.status_line import StatusLine


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_file_gets_a_whole_line_every_interval_each_topic_and_the_end():
    log, clock = io.StringIO(), _Clock()
    status = StatusLine(log, every_s=30, clock=clock)
    for second in range(100):
        clock.now = second
        status.show(f"detect {second}", topic="detect", final=second == 99)
    status.show("fit 0", topic="fit")
    status.note("a warning")
    status.show("fit 1", topic="fit")  # within the interval: not written
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == ["detect 0", "detect 30", "detect 60", "detect 90",
                                           "detect 99", "fit 0", "a warning"]


def test_a_terminal_redraws_one_line_and_notes_break_it():
    terminal = _Terminal()
    status = StatusLine(terminal)
    status.show("step 1")
    status.show("step 2")
    status.note("validation")
    status.show("step 3", final=True)
    assert terminal.getvalue() == "\rstep 1\rstep 2\nvalidation\n\rstep 3\n"
