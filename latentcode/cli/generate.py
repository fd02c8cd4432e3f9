"""``sample``, ``encode`` and ``decode``: transcripts written by the model, clean or carrying a
reference codec's payload, and the payloads read back."""

from __future__ import annotations

import argparse
import functools
import sys
import time

from .common import (
    EXIT_BAD_INPUT,
    add_engine_args,
    add_model_args,
    add_prompt_args,
    add_sampling_args,
    id_prefix,
    prompts_of,
)


def _generate_on_ray(args: argparse.Namespace, make, dtype: str = "float32"):
    """``make(lm, rows)`` over all ``args.n`` rows on a pool of Ray actors (``--engine ray``)."""
    from ..ray_engine import cluster_summary, generate_on_ray

    print(cluster_summary())  # joins or starts the cluster; names the extra when ray is missing
    return generate_on_ray(make, args.n, model=args.model, device=args.device, dtype=dtype,
                           actors=args.actors, batch_size=args.batch_size)


def cmd_sample(args: argparse.Namespace) -> int:
    from ..lm import load_lm
    from ..sampling import sample_clean
    from ..transcripts import write_transcripts

    prompts = prompts_of(args)
    make = functools.partial(
        sample_clean, prompts=prompts, n=args.n, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, top_p=args.top_p, seed=args.seed,
        batch_size=args.batch_size, id_prefix=id_prefix("clean", args))
    if args.engine == "ray":
        started = time.perf_counter()
        transcripts = _generate_on_ray(args, lambda lm, rows: make(lm, rows=rows, progress=False))
    else:
        lm = load_lm(args.model, device=args.device)
        started = time.perf_counter()
        transcripts = make(lm, progress=not args.quiet)
    elapsed = time.perf_counter() - started
    write_transcripts(args.out, transcripts)
    n_tokens = sum(t.meta["n_tokens"] for t in transcripts)
    print(f"wrote {len(transcripts)} clean transcripts to {args.out} "
          f"({n_tokens} tokens in {elapsed:.1f} s, {n_tokens / elapsed:.1f} tokens/s, "
          f"model {transcripts[0].meta['model']})")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import torch

    from ..codecs import make_codec
    from ..lm import load_lm
    from ..payload import random_payloads, read_key_file
    from ..sampling import assign_prompts
    from ..transcripts import write_transcripts

    key = read_key_file(args.key_file)
    codec = make_codec(args.codec, temperature=args.temperature, top_p=args.top_p)
    prompts = assign_prompts(prompts_of(args), args.n, args.seed)
    payloads = random_payloads(args.n, args.payload_bits, args.seed)
    ids = [f"{id_prefix(args.codec, args)}-{i:05d}" for i in range(args.n)]

    def make(lm, rows, progress=False):
        return codec.encode(lm, [prompts[i] for i in rows], [payloads[i] for i in rows], key,
                            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                            ids=[ids[i] for i in rows], progress=progress)

    if args.engine == "ray":
        started = time.perf_counter()
        transcripts = _generate_on_ray(args, make, dtype="float64")
    else:
        lm = load_lm(args.model, device=args.device, dtype=torch.float64)
        started = time.perf_counter()
        transcripts = make(lm, range(args.n), progress=not args.quiet)
    elapsed = time.perf_counter() - started
    short = [t.id for t in transcripts if not t.meta["complete"]]
    if short and not args.allow_partial:
        print(f"latentcode encode: {len(short)} of {len(transcripts)} texts ended before their "
              f"payload was embedded ({', '.join(short[:5])}{' ...' if len(short) > 5 else ''}); "
              "raise --max-new-tokens, lower --payload-bits, or pass --allow-partial. "
              "Nothing was written.", file=sys.stderr)
        return EXIT_BAD_INPUT
    write_transcripts(args.out, transcripts)
    tokens = sum(t.meta["n_tokens"] for t in transcripts)
    bits = sum(t.meta["bits_embedded"] for t in transcripts)
    entropy = sum(t.meta["entropy_bits"] for t in transcripts)
    print(f"wrote {len(transcripts)} {args.codec} transcripts to {args.out}: {bits} channel bits "
          f"in {sum(t.meta['embedding_tokens'] for t in transcripts)} embedding tokens "
          f"(utilization {bits / max(entropy, 1e-9):.3f}), {tokens} tokens in {elapsed:.1f} s")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import torch

    from ..codecs import make_codec
    from ..lm import load_lm
    from ..payload import read_key_file
    from ..transcripts import read_transcripts

    key = read_key_file(args.key_file)
    transcripts = read_transcripts(args.files)
    lm = load_lm(args.model, device=args.device, dtype=torch.float64)
    accuracies, statuses = [], {}
    print(f"{'id':<24} {'status':<8} {'accuracy':>8}  message")
    for t in transcripts:
        name = args.codec or t.meta.get("codec")
        if not name:
            print(f"{t.id:<24} {'failed':<8} {'':>8}  no --codec given and meta.codec missing")
            statuses["failed"] = statuses.get("failed", 0) + 1
            continue
        params = t.meta.get("codec_params", {}) if t.meta.get("codec") == name else {}
        result = make_codec(name, **params).decode(lm, t, key)
        statuses[result.status] = statuses.get(result.status, 0) + 1
        acc = ""
        if t.payload:
            accuracies.append(result.accuracy(t.payload) if result.status != "failed" else 0.0)
            acc = f"{accuracies[-1]:.3f}"
        print(f"{t.id:<24} {result.status:<8} {acc:>8}  {result.message}")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    mean = f"; mean bit accuracy {sum(accuracies) / len(accuracies):.3f}" if accuracies else ""
    print(f"\n{len(transcripts)} transcripts: {summary}{mean}")
    return 0


def add_sample(sub) -> None:
    p = sub.add_parser("sample", help="write clean (label 0) transcripts by plain sampling")
    add_prompt_args(p)
    p.add_argument("--n", type=int, default=200, help="number of transcripts")
    p.add_argument("--out", required=True, help="output JSONL (written atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_sampling_args(p)
    add_model_args(p)
    add_engine_args(p)
    p.set_defaults(func=cmd_sample)


def add_encode(sub) -> None:
    p = sub.add_parser("encode", help="hide random payloads with a reference codec")
    p.add_argument("--codec", required=True,
                   help="huffman, arithmetic, meteor, discop or sparsamp (zero KL: discop, sparsamp); "
                        "null: the same sampling with nothing hidden (label 0, matched clean text)")
    add_prompt_args(p)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--payload-bits", type=int, default=64)
    p.add_argument("--key-file", required=True, help="any file; its SHA-256 is the key")
    p.add_argument("--out", required=True)
    p.add_argument("--allow-partial", action="store_true",
                   help="write texts that ended before their payload was embedded")
    p.add_argument("--quiet", action="store_true")
    add_sampling_args(p)
    p.set_defaults(max_new_tokens=128)
    add_model_args(p)
    add_engine_args(p)
    p.set_defaults(func=cmd_encode)


def add_decode(sub) -> None:
    p = sub.add_parser("decode", help="recover payloads from codec transcripts")
    p.add_argument("files", nargs="+")
    p.add_argument("--codec", default=None, help="default: each transcript's meta.codec")
    p.add_argument("--key-file", required=True)
    add_model_args(p)
    p.set_defaults(func=cmd_decode)
