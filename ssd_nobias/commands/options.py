"""The options of the commands that run a model (eval, detect, export): which model, and the
config it comes with."""
from __future__ import annotations

import argparse
import os
from typing import Optional

from yacs.config import CfgNode

from ssd_nobias import cli
from ssd_nobias.atomic import numbered_folder
from ssd_nobias.config import load_config
from ssd_nobias.errors import ConfigError
from ssd_nobias.export.staging import CONFIG
from ssd_nobias.runtime.accelerator import is_int8_graph
from ssd_nobias.runtime.runtimes import INTEGER_RUNTIMES, RUNTIMES


def add_model(p: argparse.ArgumentParser) -> None:
    """The model to run, named the same way by every command that runs one: exactly one of
    --params FILE, --deploy DIR, --onnx FILE, --accelerator DIR (+ --int8)."""
    group = p.add_argument_group("model (exactly one)")
    which = group.add_mutually_exclusive_group(required=True)
    which.add_argument("--params", metavar="FILE",
                       help="a .params checkpoint written by training (its config and classes "
                            "come from the .json beside it)")
    which.add_argument("--deploy", metavar="DIR", help="a folder written by export")
    which.add_argument("--onnx", metavar="FILE",
                       help="an ONNX model written by export --formats onnx (ONNX Runtime, CPU)")
    which.add_argument("--accelerator", metavar="DIR",
                       help="the accelerator graph + host part written by export --formats "
                            "accelerator (ONNX Runtime, CPU)")
    group.add_argument("--int8", action="store_true",
                       help="with --accelerator: its INT8 graph (export --formats int8)")
    group.add_argument("--runtime", choices=RUNTIMES, default="onnxruntime",
                       help="what runs --onnx or --accelerator: ONNX Runtime (default), "
                            "OpenVINO's CPU runtime, or, for an INT8 accelerator graph, the "
                            "integer-only reference (NumPy, int32 accumulators, "
                            "multiplier-and-shift requantization), the arbiter; "
                            "onnxruntime-novnni / openvino-novnni: that reference computing "
                            "as those runtimes do on a CPU without VNNI (saturating pairs)")


def check_model(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.int8 and not args.accelerator:
        p.error("--int8 goes with --accelerator DIR")
    if args.runtime != "onnxruntime" and not (args.onnx or args.accelerator):
        p.error(f"--runtime {args.runtime} runs an ONNX file: --onnx FILE or --accelerator DIR")
    if args.runtime in INTEGER_RUNTIMES and not (args.accelerator and (
            args.int8 or args.accelerator.endswith(".onnx"))):
        p.error(f"--runtime {args.runtime} runs an INT8 accelerator graph: --accelerator DIR "
                f"--int8")


def runs_int8(args: argparse.Namespace) -> bool:
    """Whether the model given is an INT8 graph: --accelerator DIR --int8, or one INT8 graph
    of such a folder (accelerator.int8-signed.onnx, say)."""
    return bool(args.accelerator) and is_int8_graph(args.accelerator, args.int8)


def config_or_sidecar(args: argparse.Namespace, needed_for: str) -> CfgNode:
    """--config + overrides, else the config the model carries (+ overrides): a checkpoint's
    sidecar, an export folder's config.yaml; `needed_for` says, in the error, what the config
    is needed for when there is none."""
    cfg = config_if_any(args)
    if cfg is None:
        raise ConfigError(f"--config is needed for {needed_for}: "
                          f"{os.path.join(export_folder(args), CONFIG)} is not there (a "
                          f"checkpoint carries its config beside it, an export folder in "
                          f"config.yaml)")
    return cfg


def config_if_any(args: argparse.Namespace) -> Optional[CfgNode]:
    """config_or_sidecar's config, or None where an export folder carries none (an export
    from before exports wrote config.yaml)."""
    if args.config:
        return cli.config_from(args)
    if getattr(args, "params", None):
        from ssd_nobias.runtime.predictors import checkpoint_config  # MXNet: not for --help
        return checkpoint_config(args.params, args.overrides)
    carried = os.path.join(export_folder(args), CONFIG)
    return load_config(carried, args.overrides) if os.path.isfile(carried) else None


def export_folder(args: argparse.Namespace) -> str:
    """The export folder --deploy, --onnx or --accelerator names or lies in (absolute)."""
    model = os.path.abspath(args.deploy or args.onnx or args.accelerator)
    if model.endswith(".onnx"):
        model = os.path.dirname(model)  # the folder holding the graph
    if args.accelerator:
        model = os.path.dirname(model)  # accelerator/ sits in an export folder
    return model


def default_out(args: argparse.Namespace, name: str) -> str:
    """Where a command writes when --out is not given: beside the model it reads (a
    checkpoint's run folder; beside an export folder, not in it), in `name`, or name2, name3,
    ... when that is taken: a default output never replaces an earlier one."""
    if args.params:
        home = os.path.dirname(os.path.abspath(args.params))
    else:
        home = os.path.dirname(export_folder(args))
    return numbered_folder(os.path.join(home, name))
