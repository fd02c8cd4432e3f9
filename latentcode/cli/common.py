"""What the sub-commands share: the common arguments, the prompts of ``--half``, located
usage errors and the exit status for bad input."""

from __future__ import annotations

import argparse
import sys

from ..prompts import DEFAULT_PROMPTS

EXIT_BAD_INPUT = 2
FILES_HELP = ("transcript files: JSONL (ours or chat 'messages'), Parquet, or inspect_ai logs "
              "(.eval/.json, needs latentcode[inspect])")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="HF id or local folder or .gguf already on disk "
                        "(default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: a pool of Ray actors (RAY_ADDRESS's cluster, else a local one); "
                        "needs latentcode[scale]")
    p.add_argument("--actors", type=int, default=2, help="ray actors (--engine ray)")


def add_prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", default=str(DEFAULT_PROMPTS), help="prompts JSONL or .txt")
    p.add_argument("--half", choices=("train", "test"), default=None,
                   help="use one half of the prompts (split_by_prompt): write the text detectors "
                        "are fitted on with --half train, the text they score with --half test")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the --half split")


def prompts_of(args: argparse.Namespace):
    """The prompts file, or one half of it; bad input fails here, before the model loads."""
    from ..prompts import read_prompts, split_by_prompt

    prompts = read_prompts(args.prompts)
    return split_by_prompt(prompts, seed=args.split_seed)[args.half] if args.half else prompts


def id_prefix(name: str, args: argparse.Namespace) -> str:
    return f"{name}-{args.half}-s{args.seed}" if args.half else f"{name}-s{args.seed}"


def usage_error(message: str) -> int:
    print(f"latentcode: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
