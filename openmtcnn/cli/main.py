"""The ``openmtcnn`` command: builds the parser from the command modules and runs the chosen command."""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from functools import cached_property

from openmtcnn.cli.errors import UsageError

# The command modules under openmtcnn/cli/, in the order the help lists their commands; each has register(groups).
COMMAND_MODULES = ("detect", "blur", "batch",
                   "eval_widerface", "eval_landmarks", "eval_fddb", "eval_custom", "eval_compare", "bench",
                   "export_trained", "export_c", "export_ncnn", "compress", "prune", "quantize", "train", "convert",
                   "serve")


@dataclass
class Groups:
    """The sub-parser groups commands join; eval, export and compress appear when first used, so in module order."""

    top: argparse._SubParsersAction

    @cached_property
    def eval(self) -> argparse._SubParsersAction:
        p = self.top.add_parser("eval", help="evaluate on a benchmark")
        return p.add_subparsers(dest="dataset", required=True)

    @cached_property
    def export(self) -> argparse._SubParsersAction:
        p = self.top.add_parser("export", help="export models: trained checkpoints, int8 ONNX, C, ncnn")
        return p.add_subparsers(dest="what", required=True)

    @cached_property
    def compress(self) -> argparse._SubParsersAction:
        p = self.top.add_parser("compress", help="size, prune, quantise and distil the nets")
        return p.add_subparsers(dest="step", required=True)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each command module adds its commands to the groups."""
    from openmtcnn import __version__

    parser = argparse.ArgumentParser(prog="openmtcnn", description="MTCNN face detection and alignment")
    parser.add_argument("--version", action="version", version=f"openmtcnn {__version__}")
    groups = Groups(parser.add_subparsers(dest="command", required=True))
    for name in COMMAND_MODULES:
        importlib.import_module(f"openmtcnn.cli.{name}").register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse and run; exit code 2 for usage errors, 1 for other errors, 130 when interrupted."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"openmtcnn: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, ImportError, RuntimeError) as e:
        print(f"openmtcnn: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("openmtcnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
