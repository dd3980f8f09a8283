"""Why a run that trains does not learn to detect: its loss terms and val AP50 per epoch beside
what its depthwise units pass on through training (active fraction, spatial share: see
diagnostics.py), from the run's metrics.csv and checkpoints, drawn against runs that do learn.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssd_nobias_studies.diagnostics import run_trajectory
from ssd_nobias.atomic import replacing
from ssd_nobias.engine.metrics import run_curves


def snapshot_epochs(labels: Sequence[str], last_epoch: int) -> list:
    """Epochs of run_trajectory's snapshot labels: 'init' 0, 'NNNN' NNNN, 'last' `last_epoch`."""
    return [0 if s == "init" else last_epoch if s == "last" else int(s) for s in labels]


def run_profile(run_dir: str, images: int = 32) -> dict:
    """A run's loss terms and val AP50 per epoch, and its depthwise units' active fraction and
    spatial share at every checkpoint (and per unit at the last), the same per map the heads
    read, measured on `images` val images (init with batch statistics, checkpoints with running
    statistics, as deployed)."""
    c = run_curves(run_dir)
    t = run_trajectory(run_dir, images)
    last_epoch = int(c["loss_curve"][-1][0]) if c["loss_curve"] else 0
    depthwise = {name: u for name, u in t["units"].items() if u["depthwise"]}
    return {"val_curve": c["val_curve"], "loss_curve": c["loss_curve"],
            "snapshot_epochs": snapshot_epochs(t["snapshots"], last_epoch),
            "depthwise_active": t["depthwise_active"],
            "depthwise_spatial_share": t["depthwise_spatial_share"],
            "dead": t["dead"],
            "head_inputs": {name: {"active": u["active"], "spatial_share": u["spatial_share"]}
                            for name, u in t["units"].items() if u["feeds_head"]},
            "last": {name: {"active": u["active"][-1], "spatial_share": u["spatial_share"][-1]}
                     for name, u in depthwise.items()}}


def plot_collapse(path: str, profiles: Mapping[str, dict]) -> None:
    """Four panels, one colour per run: box (solid) and class (dotted) loss per epoch, val AP50
    per epoch, the depthwise units' mean active fraction and spatial share per checkpoint, and
    per depthwise unit at the end its active fraction (solid) and spatial share (dashed)."""
    fig = Figure(figsize=(12, 8))
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 2)
    for k, (label, p) in enumerate(profiles.items()):
        color = f"C{k}"
        loss = np.array(p["loss_curve"]).reshape(-1, 4)
        ax[0, 0].plot(loss[:, 0], loss[:, 3], color=color)
        ax[0, 0].plot(loss[:, 0], loss[:, 2], color=color, ls=":")
        val = np.array(p["val_curve"]).reshape(-1, 2)
        ax[0, 1].plot(val[:, 0], val[:, 1], "o-", color=color, label=label)
        ax[1, 0].plot(p["snapshot_epochs"], p["depthwise_active"], "o-", color=color)
        ax[1, 0].plot(p["snapshot_epochs"], p["depthwise_spatial_share"], "s--", color=color)
        names = list(p["last"])
        ax[1, 1].plot(range(1, len(names) + 1), [p["last"][n]["active"] for n in names],
                      "o-", color=color)
        ax[1, 1].plot(range(1, len(names) + 1), [p["last"][n]["spatial_share"] for n in names],
                      "s--", color=color)
    titles = [("training loss per epoch (solid: box, dotted: class)", "epoch"),
              ("val AP50", "epoch"),
              ("depthwise units, mean (solid: active fraction, dashed: spatial share)",
               "epoch (checkpoint)"),
              ("each depthwise unit at the end (solid: active, dashed: spatial share)",
               "depthwise unit (dw1 ... dw13)")]
    for a, (title, xlabel) in zip(ax.flat, titles):
        a.set_title(title, fontsize=10)
        a.set_xlabel(xlabel)
        a.grid(alpha=0.3)
    ax[0, 1].legend(fontsize=8)
    for a in ax[1]:
        a.set_ylim(0, 1)
    fig.tight_layout()
    with replacing(path, ".png") as tmp:
        fig.savefig(tmp, dpi=90)
