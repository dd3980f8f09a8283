"""Progress that reads well wherever it lands: a tqdm bar on a terminal; elsewhere (a log file,
nohup, a batch scheduler) one plain line every `every` seconds with the count, the rate and the
time left, so that a log holds no carriage-return fragments and still says when a job ends."""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
EVERY_S = 30.0  # between two lines in a log


def duration(seconds: float) -> str:
    """'1:02:03', '2:03' or '0:07': hours only when there are some."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def eta(done: int, total: int, elapsed: float) -> Optional[float]:
    """Seconds left at the rate so far (`done` units in `elapsed` seconds); None before the
    first unit or without a total."""
    if done <= 0 or not total or elapsed <= 0:
        return None
    return (total - done) * elapsed / done


def on_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class LogProgress:
    """tqdm's update/set_postfix/close for a stream that is not a terminal: a line
    'DESC 120/500 img (24%), 3.1 img/s, 2:03 left' when `every` seconds have passed since the
    last, and one at the end."""

    def __init__(self, total: Optional[int], desc: str, unit: str, stream: TextIO,
                 every: float = EVERY_S, initial: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.every, self.clock = every, clock
        self.initial = self.n = initial
        self.start = self.last = clock()
        self.postfix = ""
        self.closed = False

    def line(self) -> str:
        elapsed = self.clock() - self.start
        done = self.n - self.initial
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n // self.total}%)" if self.total else ""
        rate = f", {done / elapsed:.1f} {self.unit}/s" if elapsed > 0 and done > 0 else ""
        left = eta(done, (self.total or 0) - self.initial, elapsed)
        when = f", {duration(left)} left" if left is not None and self.n < (self.total or 0) \
            else f", {duration(elapsed)} in all" if self.total and self.n >= self.total else ""
        return f"{self.desc} {count} {self.unit}{share}{rate}{when}{self.postfix}"

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last >= self.every:
            self.last = self.clock()
            print(self.line(), file=self.stream, flush=True)

    def set_postfix(self, **values) -> None:
        self.postfix = "".join(f", {k} {v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed and self.n > self.initial:
            print(self.line(), file=self.stream, flush=True)
        self.closed = True


def progress_bar(total: Optional[int], desc: str, unit: str, enabled: bool = True,
                 stream: Optional[TextIO] = None, initial: int = 0, leave: bool = False,
                 every: float = EVERY_S):
    """A bar on a terminal, log lines elsewhere, nothing when not `enabled`: an object with
    tqdm's update(n), set_postfix(**values) and close()."""
    stream = stream or sys.stderr
    if enabled and on_terminal(stream):
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                    file=stream)
    if enabled:
        return LogProgress(total, desc, unit, stream, every, initial)
    return tqdm(total=total, disable=True)


def tracked(items: Iterable[T], total: Optional[int] = None, desc: str = "", unit: str = "it",
             enabled: bool = True, stream: Optional[TextIO] = None, initial: int = 0,
             every: float = EVERY_S) -> Iterator[T]:
    """Yield `items`, reporting on them as progress_bar does (`total` defaults to len(items))."""
    if total is None and hasattr(items, "__len__"):
        total = initial + len(items)  # type: ignore[arg-type]
    bar = progress_bar(total, desc, unit, enabled, stream, initial, every=every)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
