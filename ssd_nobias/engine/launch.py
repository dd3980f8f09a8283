"""Start and supervise the processes of one ps-lite run: a scheduler, S servers, W workers.

Every process runs the same command; the DMLC_* variables give it its role (importing mxnet
turns a scheduler or server into its serving loop). Output is forwarded line by line with a
prefix: `scheduler`, `server i`, and for a worker `worker #i` (launch order) until it
prints `ps-lite worker rank R of W` (see distributed.connect), then `rank R`: ps-lite, not
the launcher, assigns ranks. If any process fails, or a scheduler or server ends while
workers still run, all are stopped, process groups included, and the run fails naming the
process and the cause.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, TextIO

from ssd_nobias.errors import Stopped, UserError
from ssd_nobias.engine.preemption import StopRequest

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 5.0  # between SIGTERM and SIGKILL
SERVERS_EXIT_S = 30.0  # for scheduler and servers to end once the workers are done, or back
STOP_SAVE_S = 60.0  # for workers to save and exit once a stop signal is passed on
RANK_LINE = re.compile(r"ps-lite worker rank (\d+) of (\d+)")


class LaunchError(UserError):
    """A process of the run failed; the message names it and how it ended."""


@dataclass
class Role:
    """One process to start: its name in the output, its host and its DMLC_* variables."""

    name: str
    host: str
    env: Dict[str, str]
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)


def read_hostfile(path: str) -> List[str]:
    """Host names or addresses, one per line; blank lines and # comments skipped."""
    try:
        with open(path) as f:
            hosts = [line.split("#")[0].strip() for line in f]
    except OSError as err:
        raise UserError(f"cannot read hostfile '{path}': {err.strerror}") from None
    hosts = [h for h in hosts if h]
    if not hosts:
        raise UserError(f"hostfile '{path}' lists no host")
    return hosts


def address(host: str) -> str:
    """The IPv4 address of a host name: ps-lite binds and connects by address only."""
    try:
        return socket.gethostbyname(host)
    except OSError as err:
        raise UserError(f"cannot resolve host '{host}': {err}") from None


def plan(workers: int, servers: int, hosts: Sequence[str], port: int) -> List[Role]:
    """The scheduler on the first host; servers and workers round-robin over the hosts."""
    if workers < 1 or servers < 1:
        raise UserError("a run needs at least one worker and one server")
    common = {"DMLC_PS_ROOT_URI": address(hosts[0]), "DMLC_PS_ROOT_PORT": str(port),
              "DMLC_NUM_SERVER": str(servers), "DMLC_NUM_WORKER": str(workers)}

    def role(kind: str, index: int, host: str) -> Role:
        name = {"scheduler": kind, "server": f"server {index}"}.get(kind, f"worker #{index}")
        return Role(name, host, dict(common, DMLC_ROLE=kind, DMLC_NODE_HOST=address(host)))

    roles = [role("scheduler", 0, hosts[0])]
    roles += [role("server", i, hosts[i % len(hosts)]) for i in range(servers)]
    roles += [role("worker", i, hosts[i % len(hosts)]) for i in range(workers)]
    return roles


def _forward(role: Role, out: TextIO, lock: threading.Lock) -> None:
    for line in iter(role.proc.stdout.readline, ""):
        ranked = RANK_LINE.fullmatch(line.strip())
        if ranked and role.env["DMLC_ROLE"] == "worker":
            role.name = f"rank {ranked.group(1)}"
        with lock:
            out.write(f"[{role.name}] {line.rstrip()}\n")
            out.flush()
    role.proc.stdout.close()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Launch:
    """A running set of processes; `wait()` supervises them and stops them all on failure."""

    def __init__(self, roles: List[Role], command: Sequence[str], ssh: Optional[str] = None,
                 out: TextIO = sys.stdout, local_env: Optional[Dict[str, str]] = None):
        self.roles, self.command, self.ssh, self.out = roles, list(command), ssh, out
        self.local_env = local_env or {}
        self.lock = threading.Lock()
        self.threads: List[threading.Thread] = []

    def _argv(self, role: Role) -> List[str]:
        if self.ssh is None:
            return self.command
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(role.env.items()))
        remote = f"cd {shlex.quote(os.getcwd())} && env {env} {shlex.join(self.command)}"
        return shlex.split(self.ssh) + [role.host, remote]

    def start(self) -> "Launch":
        for role in self.roles:
            env = dict(os.environ, **self.local_env, **role.env, PYTHONUNBUFFERED="1")
            role.proc = subprocess.Popen(self._argv(role), env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         text=True, start_new_session=True)
            self.say(f"started {role.name} on {role.host}, pid {role.proc.pid}")
            thread = threading.Thread(target=_forward, daemon=True,
                                      args=(role, self.out, self.lock))
            thread.start()
            self.threads.append(thread)
        return self

    def say(self, message: str) -> None:
        with self.lock:
            self.out.write(f"[launch] {message}\n")
            self.out.flush()

    def workers(self) -> List[Role]:
        return [r for r in self.roles if r.env["DMLC_ROLE"] == "worker"]

    def wait(self, stop: Optional[StopRequest] = None) -> None:
        """Return when every worker succeeded, or as soon as `stop` is requested; raise
        LaunchError otherwise (then `stop()`)."""
        workers = self.workers()
        others = [r for r in self.roles if r not in workers]
        ended: Dict[str, float] = {}  # scheduler or server that ended while workers run: when
        try:
            while stop is None or not stop.requested:
                for role in self.roles:
                    code = role.proc.poll()
                    if code is None:
                        continue
                    if code != 0:
                        raise LaunchError(f"{role.name} (pid {role.proc.pid}) failed: "
                                          f"{_describe(code)}")
                    if role in others and any(w.proc.poll() is None for w in workers):
                        since = ended.setdefault(role.name, time.monotonic())
                        if time.monotonic() - since > SERVERS_EXIT_S:
                            raise LaunchError(f"{role.name} (pid {role.proc.pid}) ended while "
                                              f"workers were still running")
                if all(w.proc.poll() == 0 for w in workers):
                    break
                time.sleep(0.1)
            if stop is not None and stop.requested:
                return
            deadline = time.monotonic() + SERVERS_EXIT_S
            while time.monotonic() < deadline and any(r.proc.poll() is None for r in others):
                time.sleep(0.1)
            if any(r.proc.poll() is None for r in others):
                self.say("scheduler or servers still up after the workers finished: stopped")
        except LaunchError as err:
            self.say(f"{err}; stopping the others")
            raise

    def forward_stop(self, signum: int, grace: float) -> List[Optional[int]]:
        """Send `signum` to every worker that still runs (locally to the training process
        itself, not its group: its loader processes must live until it has saved) and wait up
        to `grace` seconds for them to save and exit; their exit codes (None: still running)."""
        workers = [w for w in self.workers() if w.proc.poll() is None]
        self.say(f"{signal.Signals(signum).name}: asking {len(workers)} worker(s) to save and "
                 f"stop")
        for worker in workers:
            try:
                if self.ssh is None:
                    os.kill(worker.proc.pid, signum)
                else:  # the ssh client: closing it hangs up the remote command
                    os.killpg(worker.proc.pid, signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(w.proc.poll() is None for w in workers):
            time.sleep(0.1)
        return [w.proc.poll() for w in self.workers()]

    def stop(self) -> None:
        """SIGTERM every process group still alive; after a grace time, SIGKILL every group
        (a group may outlive its leader) and reap."""
        started = [r for r in self.roles if r.proc is not None]
        alive = [r for r in started if r.proc.poll() is None]
        _signal_groups(alive, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(r.proc.poll() is None for r in alive):
            time.sleep(0.05)
        _signal_groups(started, signal.SIGKILL)
        for role in started:
            try:
                role.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        for thread in self.threads:
            thread.join(timeout=2)


def _signal_groups(roles: Sequence[Role], sig: signal.Signals) -> None:
    for role in roles:
        try:
            os.killpg(role.proc.pid, sig)
        except ProcessLookupError:
            pass


class LaunchStopped(Stopped):
    """The launcher got a stop signal and passed it on to the workers."""

    def __init__(self, signum: int, codes: Sequence[Optional[int]]):
        self.code = 128 + signum
        ends = ", ".join("still running (killed)" if c is None else _describe(c) for c in codes)
        super().__init__(f"{signal.Signals(signum).name} received and passed on to the "
                         f"workers, which ended with: {ends}; train.resume=auto continues "
                         f"from the checkpoint they wrote")


def launch(command: Sequence[str], workers: int, servers: int = 1,
           hosts: Sequence[str] = (LOOPBACK,), port: int = 9091, ssh: Optional[str] = None,
           out: TextIO = sys.stdout, stop_grace: float = STOP_SAVE_S) -> None:
    """Run `command` as a scheduler, `servers` servers and `workers` workers; raise on failure.

    Without `ssh` every process runs here (hosts must then be this machine); with it, each runs
    as `<ssh> <host> 'cd <cwd> && env DMLC_...=... <command>'`. Locally, OpenMP threads are
    divided among the workers unless OMP_NUM_THREADS is set.
    """
    if not command:
        raise UserError("no command to launch: put it after --, e.g. -- python "
                        "scripts/train_ssd.py --config C.yaml train.kvstore=dist_sync")
    if port == 0:
        port = free_port()
    local_env = {}
    if ssh is None and "OMP_NUM_THREADS" not in os.environ:
        local_env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    run = Launch(plan(workers, servers, hosts, port), command, ssh, out, local_env)
    # The first SIGTERM or SIGINT is passed on to the workers, which save and exit; a second
    # one stops everything at once.
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM,)}
    try:
        with StopRequest() as stop:
            run.start().wait(stop)
            if stop.requested:
                raise LaunchStopped(stop.signum, run.forward_stop(stop.signum, stop_grace))
    finally:
        run.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
