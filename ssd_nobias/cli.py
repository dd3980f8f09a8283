"""What every script shares: `--config FILE key.sub=value ...`, and errors printed plainly."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from yacs.config import CfgNode

from ssd_nobias.config import load_config, shipped_configs
from ssd_nobias.errors import Stopped, UserError


class ConfigParser(argparse.ArgumentParser):
    """Options and key=value overrides in any order (`--config a.yaml k=v --overwrite k2=v2`):
    argparse alone takes the positionals in one run."""

    def parse_args(self, args=None, namespace=None):
        return self.parse_intermixed_args(args, namespace)


def parser(description: str, config_required: bool = True) -> argparse.ArgumentParser:
    """An ArgumentParser with the shared --config and key=value overrides anywhere."""
    p = ConfigParser(description=description,
                                epilog="Overrides: any config key, e.g. train.lr=0.05 "
                                       "train.ctx=[gpu0,gpu1]; `ssd-nobias train "
                                       "--print-config` lists every key with what it does")
    p.add_argument("--config", required=config_required, metavar="YAML",
                   help=f"a YAML file, or a shipped config by name: "
                        f"{', '.join(shipped_configs())}")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="config overrides, applied after the file")
    return p


def retired(p: argparse.ArgumentParser, flag: str, hint: str) -> None:
    """A flag this command no longer takes, refused with what to write instead (hidden)."""
    class Refuse(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(f"{option_string} {hint}")
    p.add_argument(flag, nargs="?", action=Refuse, help=argparse.SUPPRESS)


def add_device(p: argparse.ArgumentParser) -> None:
    """--device: where inference runs, apart from the config's training devices."""
    p.add_argument("--device", metavar="cpu|gpuN",
                   help="where a checkpoint or deploy graph runs (default: the config's "
                        "train.ctx if this machine has it, else the CPU); ONNX runs on the CPU")


def config_from(args: argparse.Namespace) -> CfgNode:
    """The validated config the parsed arguments describe."""
    return load_config(args.config, args.overrides)


def run(main: Callable[[Optional[Sequence[str]]], int], argv=None) -> int:
    """Call a script's main; a UserError, a stop on a signal or Ctrl-C ends it with a message,
    not a traceback."""
    try:
        return main(argv)
    except Stopped as err:
        print(f"stopped: {err}", file=sys.stderr)
        return err.code
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
