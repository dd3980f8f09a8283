"""Images/s of the whole training loop (loader workers, augmentation, anchor targets, forward,
loss, backward, SGD step), `norm: nobias` against `norm: batchnorm`, in one run.

Both trainers are built from the same config (default: the demo's) on the synthetic dataset and
timed in alternating rounds so that load on a shared machine hits both alike; the median
images/s of each and the median of the per-round ratios are printed.

    python bench/train_throughput.py [--config configs/demo_synthetic.yaml] [--iters 20]
        [--rounds 3] [key=value ...]
"""
import os
import statistics
import sys
import tempfile
import time

from ssd_nobias import cli
from ssd_nobias.config import load_config
from ssd_nobias.data.synthetic import make_synthetic
from ssd_nobias.engine.train import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def images_per_s(trainer: Trainer, iters: int, round_index: int) -> float:
    """Run `iters` training iterations after one untimed warm-up batch; return images/s."""
    trainer.sampler.set_epoch(round_index, skip=0)
    trainer.net.hybridize(static_alloc=True, static_shape=True)
    batches = iter(trainer.loader)
    trainer.step(next(batches))
    images, start = 0, time.perf_counter()
    for _ in range(iters):
        batch = next(batches)
        trainer.step(batch)  # returns host-side losses, so the step has finished
        images += batch[0].shape[0]
    return images / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0], config_required=False)
    p.add_argument("--iters", type=int, default=20, help="timed iterations per round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    config = args.config or os.path.join(ROOT, "configs", "demo_synthetic.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        base = load_config(config, args.overrides)
        need = (args.iters + 1) * base.train.batch_size
        if not os.path.isdir(base.data.root):
            make_synthetic(os.path.join(tmp, "data"), train=need, val=2, seed=0)
            args.overrides.append(f"data.root={os.path.join(tmp, 'data')}")
        trainers = {norm: Trainer(load_config(config, [*args.overrides, f"model.norm={norm}",
                                                       f"output_dir={tmp}/{norm}"]))
                    for norm in ("batchnorm", "nobias")}
        if len(trainers["nobias"].train_set) < need:
            raise SystemExit(f"{base.data.root} has fewer than {need} training images")
        speeds = {norm: [] for norm in trainers}
        for r in range(args.rounds):
            for norm, trainer in trainers.items():
                speeds[norm].append(images_per_s(trainer, args.iters, r))
    cfg = trainers["nobias"].cfg
    print(f"{cfg.model.name}, batch {cfg.train.batch_size} on {','.join(cfg.train.ctx)}, "
          f"{cfg.data.num_workers} loader workers, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.rounds} rounds of {args.iters} "
          f"iterations")
    for norm, values in speeds.items():
        print(f"{norm:10s} {statistics.median(values):7.1f} images/s  "
              f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")
    ratio = statistics.median(b / n for b, n in zip(speeds["batchnorm"], speeds["nobias"]))
    print(f"time per image, nobias / batchnorm: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
