"""Capacity, distortion and speed of every reference codec on the embedded model.

Run by hand: `.venv/bin/python benchmarks/codecs.py [--n 100 --max-new-tokens 128]`.

For each top-p setting, plain sampling, the null codec and every codec generate ``n``
responses to the same prompts in the same process, with the model in float64 (what the codecs need for exact decoding)
and the same batch size, so time ratios compare like with like. Payloads are longer than any
response can carry, so every generated token embeds and the per-token numbers are not diluted by
free sampling after the frame.

Columns:
- bits/token: channel bits embedded per generated token (with the information of a block or
  interval that the text had not finished, ``meta["bits_in_flight"]``).
- util: bits embedded (with those in flight) / summed entropy (bits) of the distributions
  sampled from; util whole: whole channel bits only (what a receiver of this very text could
  read; lower for block codecs on short texts, whose last block is unfinished).
- KL/token: mean KL(stego step distribution || model step distribution), nats, exact at each
  visited context (0 for discop and sparsamp by construction; see tests for chi-square checks).
- dlogp: mean log p(token) of the stego text's tokens minus that of the null codec's text (the
  same sampling pipeline with nothing hidden: see ``latentcode/codecs/null.py``), both
  re-tokenized and scored by the model, with two standard errors: an empirical shift that needs
  no knowledge of the codec. Plain ``sample_clean`` text is not the baseline here because it
  may stop early and is sampled in float32 without the codecs' UTF-8 mask.
- time: seconds per generated token, and the ratio to plain sampling in the same run.
- decoded: transcripts whose payload (``--decode-bits`` bits) was recovered from the text alone,
  CRC-verified, out of ``--decode-n`` (separate encodes long enough for the frame; top-p 1).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from latentcode.codecs import CODECS, NullCodec, make_codec
from latentcode.lm import load_lm
from latentcode.payload import random_payloads
from latentcode.prompts import read_prompts
from latentcode.sampling import sample_clean

KEY = b"benchmark key"


@torch.inference_mode()
def token_logprobs(lm, prompts: list[str], texts: list[str]) -> np.ndarray:
    """Log p of each response token under the model (the text re-tokenized: a shift measure)."""
    out = []
    for prompt, text in zip(prompts, texts):
        p_ids = lm.prompt_ids([prompt])[0]
        t_ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not t_ids:
            continue
        ids = torch.tensor([p_ids + t_ids], device=lm.device)
        logits = lm.model(input_ids=ids).logits[0, len(p_ids) - 1:-1].double()
        lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(t_ids, device=lm.device)[:, None])
        out.append(lp[:, 0].cpu().numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--top-p", default="1.0,0.95")
    parser.add_argument("--codecs", default=",".join(CODECS))
    parser.add_argument("--codec-params", default="{}",
                        help='JSON per codec, e.g. \'{"sparsamp": {"block_bits": 128}}\'')
    parser.add_argument("--decode-n", type=int, default=10)
    parser.add_argument("--decode-bits", type=int, default=64)
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()

    codec_params = json.loads(args.codec_params)
    lm = load_lm(args.model, dtype=torch.float64)
    pool = read_prompts()
    rng = np.random.default_rng(0)
    chosen = [pool[i] for i in rng.choice(len(pool), size=args.n, replace=len(pool) < args.n)]
    prompts = [p.prompt for p in chosen]
    long_payloads = random_payloads(args.n, 60_000, seed=1)
    short_payloads = random_payloads(args.decode_n, args.decode_bits, seed=2)
    sample_clean(lm, chosen[:2], 2, max_new_tokens=2, progress=False)  # warm-up

    rows = []
    for top_p in [float(x) for x in args.top_p.split(",")]:
        started = time.perf_counter()
        plain = sample_clean(lm, chosen, args.n, max_new_tokens=args.max_new_tokens,
                             min_new_tokens=args.max_new_tokens, top_p=top_p, seed=0,
                             batch_size=args.batch_size, progress=False)
        plain_s = time.perf_counter() - started
        plain_tokens = sum(t.meta["n_tokens"] for t in plain)
        rows.append({"codec": "plain", "top_p": top_p, "tokens": plain_tokens,
                     "s_per_token": plain_s / plain_tokens, "ratio": 1.0})
        null_lp = None
        for name in ["null"] + args.codecs.split(","):
            codec = (NullCodec(top_p=top_p) if name == "null"
                     else make_codec(name, top_p=top_p, **codec_params.get(name, {})))
            started = time.perf_counter()
            ts = codec.encode(lm, prompts, long_payloads, KEY, max_new_tokens=args.max_new_tokens,
                              batch_size=args.batch_size)
            elapsed = time.perf_counter() - started
            tokens = sum(t.meta["n_tokens"] for t in ts)
            whole = sum(t.meta["bits_embedded"] for t in ts)
            bits = whole + sum(t.meta["bits_in_flight"] for t in ts)
            steps = sum(t.meta["embedding_tokens"] for t in ts)
            entropy = sum(t.meta["entropy_bits"] for t in ts)
            kl = sum(t.meta["kl_nats"] for t in ts)
            lp = token_logprobs(lm, prompts, [t.text for t in ts])
            null_lp = lp if null_lp is None else null_lp
            se = math.sqrt(lp.var() / len(lp) + null_lp.var() / len(null_lp))
            decoded, decode_s = 0, None
            if args.decode_n and top_p == 1.0 and codec.carries_payload:
                short = codec.encode(lm, prompts[:args.decode_n], short_payloads, KEY,
                                     max_new_tokens=2 * (args.decode_bits + 56),
                                     batch_size=args.batch_size)
                started = time.perf_counter()
                for t, payload in zip(short, short_payloads):
                    decoded += codec.decode(lm, t, KEY).bits == payload
                decode_s = (time.perf_counter() - started) / max(1, args.decode_n)
            rows.append({
                "codec": name, "params": codec.params(), "top_p": top_p, "tokens": tokens, "bits_per_token": bits / steps,
                "utilization": bits / entropy, "utilization_whole_bits": whole / entropy,
                "entropy_per_token": entropy / steps,
                "kl_per_token": kl / steps, "dlogp": float(lp.mean() - null_lp.mean()), "dlogp_2se": 2 * se,
                "s_per_token": elapsed / tokens, "ratio": (elapsed / tokens) / (plain_s / plain_tokens),
                "decoded": f"{decoded}/{args.decode_n}" if decode_s is not None else "-",
                "decode_s": decode_s,
            })
            print(f"  done {name} top_p={top_p}", flush=True)

    print(f"\nmodel {lm.name} (float64) on {lm.device}, torch threads {torch.get_num_threads()}, "
          f"n={args.n}, max_new_tokens={args.max_new_tokens}, batch {args.batch_size}, temperature 1")
    head = (f"{'codec':<11}{'top_p':>6}{'bits/tok':>9}{'H/tok':>7}{'util':>7}{'whole':>7}{'KL/tok':>9}"
            f"{'dlogp':>15}{'s/tok':>8}{'vs plain':>9}{'decoded':>9}{'dec s':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["codec"] == "plain":
            print(f"{'plain':<11}{r['top_p']:>6.2f}{'':>9}{'':>7}{'':>7}{'':>7}{'':>9}{'':>15}"
                  f"{r['s_per_token']:>8.4f}{1.0:>8.2f}x")
            continue
        print(f"{r['codec']:<11}{r['top_p']:>6.2f}{r['bits_per_token']:>9.2f}"
              f"{r['entropy_per_token']:>7.2f}{r['utilization']:>7.3f}"
              f"{r['utilization_whole_bits']:>7.3f}{r['kl_per_token']:>9.4f}"
              f"{r['dlogp']:>+8.3f}±{r['dlogp_2se']:<5.3f} {r['s_per_token']:>7.4f}"
              f"{r['ratio']:>8.2f}x{r['decoded']:>9}{(r['decode_s'] or 0):>7.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
