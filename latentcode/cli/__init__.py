"""``latentcode`` command line: one sub-command per job, each a thin layer over the Python API.

The sub-commands live in one module per group (``generate``: sample, encode, decode;
``detect``: detect, report, validate, export; ``train``: train, measure, zoo, demo), each
adding its parsers to the one parser built here. A new sub-command is a ``cmd_*`` function and
an ``add_*`` function in its group's module, listed in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import sys

from ..codecs.state import CodecError
from ..formats import MissingExtraError
from ..jsonl import RecordError
from ..lm import LMNotFoundError
from ..payload import PayloadError
from . import detect, generate, train
from .common import EXIT_BAD_INPUT, usage_error

# in the order ``latentcode --help`` lists them
SUBCOMMANDS = (generate.add_sample, generate.add_encode, generate.add_decode, detect.add_detect,
               train.add_train, train.add_measure, train.add_zoo, train.add_arms_race,
               detect.add_report, detect.add_validate, detect.add_export, train.add_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentcode",
        description="Train, detect and report latent codes hidden in language-model text.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("n", "n_train", "n_test", "max_new_tokens", "batch_size", "payload_bits",
                 "n_bootstrap", "examples", "actors"):
        if getattr(args, name, 1) < 1:
            return usage_error(f"--{name.replace('_', '-')} must be at least 1")
    if getattr(args, "temperature", 0) < 0:
        return usage_error("--temperature must be >= 0 (0 is greedy)")
    if not 0 < getattr(args, "top_p", 1) <= 1:
        return usage_error("--top-p must be in (0, 1]")
    try:
        return args.func(args)
    except RecordError as err:
        print(f"latentcode {args.command}: {err}\nnothing was written.", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (LMNotFoundError, PayloadError, CodecError, MissingExtraError) as err:
        print(f"latentcode {args.command}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130

