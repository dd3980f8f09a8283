"""Training images/s of one process against 1 and 2 local workers on the parameter-server kvstore.

Runs the demo recipe (configs/demo_synthetic.yaml, global batch 16) on the synthetic set for a
few epochs each way, launched by scripts/launch_dist.py over the loopback, and prints the
median images/s of rank 0's log intervals (the first, with the start-up, left out) side by
side. OpenMP threads are split among the workers. On a machine with GPUs, pass
`--ctx gpu0 --kvstore dist_device_sync` to run each worker on a GPU.

    python bench/dist_scaling.py [--epochs 2] [--train 256] [--ctx cpu] [--kvstore dist_sync]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from ssd_nobias.engine.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def images_per_s(out_dir: str) -> float:
    speeds = [float(r["images_per_s"]) for r in read_metrics(out_dir) if r["images_per_s"]]
    return statistics.median(speeds[1:] or speeds)


def run(command, env) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train", type=int, default=256, help="synthetic training images")
    p.add_argument("--ctx", default="cpu", help="each worker's context")
    p.add_argument("--kvstore", default="dist_sync")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        run([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic_voc.py"), "--out",
             data, "--train", str(args.train), "--val", "8"], os.environ)
        train = [sys.executable, os.path.join(ROOT, "scripts", "train_ssd.py"), "--config",
                 os.path.join(ROOT, "configs", "demo_synthetic.yaml"), f"data.root={data}",
                 f"train.epochs={args.epochs}", f"train.val_interval={args.epochs}",
                 "train.log_interval=4", f"train.ctx=[{args.ctx}]", "eval.num_images=0"]
        launch = [sys.executable, os.path.join(ROOT, "scripts", "launch_dist.py"), "--local",
                  "--port", "0"]
        speeds = {}
        for name, workers in (("one process, no kvstore", 0), ("1 worker, 1 server", 1),
                              ("2 workers, 1 server", 2)):
            out = os.path.join(tmp, f"run{workers}")
            threads = str(max(1, cores // max(1, workers)))
            env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", threads))
            command = train + [f"output_dir={out}"]
            if workers:
                command = launch + ["-n", str(workers), "--"] + command + \
                    [f"train.kvstore={args.kvstore}"]
            run(command, env)
            speeds[name] = images_per_s(out)
        base = speeds["one process, no kvstore"]
        print(f"demo recipe, global batch 16, {args.train} images x {args.epochs} epochs, "
              f"ctx {args.ctx} per worker, {cores} cores, {args.kvstore}")
        for name, speed in speeds.items():
            print(f"  {name:26s} {speed:7.1f} images/s  {speed / base:5.2f}x one process")


if __name__ == "__main__":
    main()
