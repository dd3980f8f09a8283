"""Progress in a log: plain lines at a fixed interval with the count, rate and time left."""
import io

from ssd_nobias.progress import LogProgress, duration, eta, progress_bar, tracked


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_durations_read_as_a_clock():
    assert duration(7) == "0:07"
    assert duration(123) == "2:03"
    assert duration(3723) == "1:02:03"
    assert duration(-3) == "0:00"


def test_eta_is_the_rest_at_the_rate_so_far():
    assert eta(25, 100, 50.0) == 150.0
    assert eta(0, 100, 50.0) is None
    assert eta(10, 0, 5.0) is None


def test_a_log_gets_one_line_per_interval_and_one_at_the_end():
    stream, clock = io.StringIO(), Clock()
    bar = LogProgress(40, "eval", "img", stream, every=30.0, clock=clock)
    for _ in range(10):  # 10 images in 20 s: no line yet
        clock.now += 2.0
        bar.update()
    assert stream.getvalue() == ""
    for _ in range(10):  # past 30 s: one line, at image 15
        clock.now += 2.0
        bar.update()
    bar.set_postfix(loss="0.123")
    for _ in range(20):
        clock.now += 2.0
        bar.update()
    bar.close()
    bar.close()  # closing twice writes nothing more
    assert stream.getvalue().splitlines() == [
        "eval 15/40 img (37%), 0.5 img/s, 0:50 left",
        "eval 30/40 img (75%), 0.5 img/s, 0:20 left, loss 0.123",
        "eval 40/40 img (100%), 0.5 img/s, 1:20 in all, loss 0.123",
    ]


def test_a_resumed_count_takes_its_rate_from_this_run_only():
    stream, clock = io.StringIO(), Clock()
    bar = LogProgress(100, "epoch 2/2", "it", stream, every=10.0, initial=60, clock=clock)
    for _ in range(10):
        clock.now += 1.0
        bar.update()
    assert stream.getvalue().splitlines() == ["epoch 2/2 70/100 it (70%), 1.0 it/s, 0:30 left"]


def test_not_a_terminal_means_log_lines_and_disabled_means_nothing():
    stream = io.StringIO()
    assert isinstance(progress_bar(3, "x", "it", stream=stream), LogProgress)
    assert list(tracked([1, 2, 3], desc="x", stream=stream, enabled=False)) == [1, 2, 3]
    assert list(tracked(iter([1, 2]), desc="x", stream=stream, every=0.0)) == [1, 2]
    assert stream.getvalue().splitlines()[-1].startswith("x 2 it")
