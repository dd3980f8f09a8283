"""Run a command as one ps-lite job (scheduler, servers, workers) on this machine or over ssh.

    python scripts/launch_dist.py --local -n 2 [-s 1] [--port 9091] -- \\
        python scripts/train_ssd.py --config C.yaml train.kvstore=dist_sync
    python scripts/launch_dist.py --hostfile hosts.txt -n 4 -s 2 -- python scripts/train_ssd.py ...
"""
import argparse

from ssd_nobias.engine.launch import LOOPBACK, STOP_SAVE_S, launch, read_hostfile


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                usage="%(prog)s (--local | --hostfile FILE) -n W [-s S] -- "
                                      "COMMAND ...")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true",
                       help="every process on this machine, over the loopback")
    where.add_argument("--hostfile", help="one host per line; the scheduler runs on the first, "
                                          "servers and workers round-robin; started over ssh")
    p.add_argument("-n", "--workers", type=int, required=True, help="number of workers")
    p.add_argument("-s", "--servers", type=int, default=1, help="number of servers (default 1)")
    p.add_argument("--port", type=int, default=9091,
                   help="the scheduler's port (default 9091; 0: any free port, --local only)")
    p.add_argument("--ssh", default="ssh -o BatchMode=yes -tt",
                   help="how to reach a host of the hostfile (default: %(default)s; -tt makes "
                        "remote processes end with the connection)")
    p.add_argument("--stop-grace", type=float, default=STOP_SAVE_S, metavar="S",
                   help="on SIGTERM or Ctrl-C, seconds the workers get to save and exit "
                        "(default %(default)g)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="after --: the command to run")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.local:
        launch(command, args.workers, args.servers, [LOOPBACK], args.port,
               stop_grace=args.stop_grace)
    else:
        launch(command, args.workers, args.servers, read_hostfile(args.hostfile), args.port,
               ssh=args.ssh, stop_grace=args.stop_grace)
    return 0

