"""Training that survives preemption: stop requests from signals, one run per directory, and
no litter from writers that were killed.

Schedulers stop a job with SIGTERM (Slurm, Kubernetes, `kill`), then SIGKILL a few seconds
later; a user presses Ctrl-C (SIGINT). Both only ask the run to stop: the training loop finishes
the step it is in, writes `<name>-last` with the optimizer state and exits with 128 + the
signal number. SIGKILL cannot be caught; checkpoints are written under temporary names and
renamed, so a killed writer leaves at most a `*.tmp-<pid>` file, which the next run in the
directory removes.
"""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import threading
from typing import Optional

from ssd_nobias.errors import Stopped, UserError

log = logging.getLogger("ssd_nobias")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LOCK_FILE = ".run.lock"


class Preempted(Stopped):
    """The run stopped on a signal after saving; `code` is the exit status it asks for."""

    def __init__(self, signum: int, iteration: int, checkpoint: Optional[str]):
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        self.code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at iteration {iteration}; "
                         f"checkpoint {checkpoint or '(written by rank 0)'}; "
                         f"train.resume=auto continues from it")


class StopRequest:
    """Records the first SIGTERM or SIGINT instead of dying, while installed (a context
    manager, main thread only). A second signal of the same kind acts as it would have
    without this class, for a user who does not want to wait for the save."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {}
        self._pid = os.getpid()

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:
            # a data loader's worker, forked with this handler: the training process decides
            # when to stop, and a worker pool being shut down ends its workers by closing pipes
            return
        if self.signum is None:
            self.signum = signum
            log.info("%s received: stopping after this step", signal.Signals(signum).name)
            return
        previous = self._previous.get(signum, signal.SIG_DFL)
        self.__exit__()
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None


class RunDirectoryInUse(UserError):
    """Another live training run holds the run directory."""


class RunLock:
    """An exclusive lock on a run directory for as long as this process trains in it.

    Held with flock on `<out_dir>/.run.lock`, so the kernel releases it when the process dies,
    SIGKILL included; the file names the holder for the error a second run gets.
    """

    def __init__(self, out_dir: str):
        self.path = os.path.join(out_dir, LOCK_FILE)
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirectoryInUse(
                f"run directory '{os.path.dirname(self.path)}' is in use by a live training "
                f"run ({holder}); stop it, or give this run another output_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays, empty of meaning
            self._fd = None
