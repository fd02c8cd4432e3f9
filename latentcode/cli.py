"""``latentcode`` command line: one sub-command per job, each a thin layer over the Python API."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

from .codecs.base import CodecError
from .formats import MissingExtraError
from .jsonl import DEFAULT_MAX_LINE_BYTES, RecordError, write_json
from .lm import LMNotFoundError
from .payload import PayloadError
from .prompts import DEFAULT_PROMPTS

EXIT_BAD_INPUT = 2
FILES_HELP = ("transcript files: JSONL (ours or chat 'messages'), Parquet, or inspect_ai logs "
              "(.eval/.json, needs latentcode[inspect])")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="HF id or local folder or .gguf already on disk "
                        "(default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: a pool of Ray actors (RAY_ADDRESS's cluster, else a local one); "
                        "needs latentcode[scale]")
    p.add_argument("--actors", type=int, default=2, help="ray actors (--engine ray)")


def _add_prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", default=str(DEFAULT_PROMPTS), help="prompts JSONL or .txt")
    p.add_argument("--half", choices=("train", "test"), default=None,
                   help="use one half of the prompts (split_by_prompt): write the text detectors "
                        "are fitted on with --half train, the text they score with --half test")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the --half split")


def _prompts(args: argparse.Namespace):
    """The prompts file, or one half of it; bad input fails here, before the model loads."""
    from .prompts import read_prompts, split_by_prompt

    prompts = read_prompts(args.prompts)
    return split_by_prompt(prompts, seed=args.split_seed)[args.half] if args.half else prompts


def _id_prefix(name: str, args: argparse.Namespace) -> str:
    return f"{name}-{args.half}-s{args.seed}" if args.half else f"{name}-s{args.seed}"


def _generate_on_ray(args: argparse.Namespace, make, dtype: str = "float32"):
    """``make(lm, rows)`` over all ``args.n`` rows on a pool of Ray actors (``--engine ray``)."""
    from .ray_engine import cluster_summary, generate_on_ray

    print(cluster_summary())  # joins or starts the cluster; names the extra when ray is missing
    return generate_on_ray(make, args.n, model=args.model, device=args.device, dtype=dtype,
                           actors=args.actors, batch_size=args.batch_size)


def cmd_sample(args: argparse.Namespace) -> int:
    from .lm import load_lm
    from .sampling import sample_clean
    from .transcripts import write_transcripts

    prompts = _prompts(args)
    make = functools.partial(
        sample_clean, prompts=prompts, n=args.n, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, top_p=args.top_p, seed=args.seed,
        batch_size=args.batch_size, id_prefix=_id_prefix("clean", args))
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

    from .codecs import make_codec
    from .lm import load_lm
    from .payload import random_payloads, read_key_file
    from .sampling import assign_prompts
    from .transcripts import write_transcripts

    key = read_key_file(args.key_file)
    codec = make_codec(args.codec, temperature=args.temperature, top_p=args.top_p)
    prompts = assign_prompts(_prompts(args), args.n, args.seed)
    payloads = random_payloads(args.n, args.payload_bits, args.seed)
    ids = [f"{_id_prefix(args.codec, args)}-{i:05d}" for i in range(args.n)]

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

    from .codecs import make_codec
    from .lm import load_lm
    from .payload import read_key_file
    from .transcripts import read_transcripts

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


def cmd_detect(args: argparse.Namespace) -> int:
    """Fit detectors on reference/training transcripts, score others, write them with scores."""
    from detectors import DETECTORS, DetectorError

    from .lm import load_lm
    from .transcripts import read_transcripts, write_transcripts

    if args.engine == "ray":
        from .ray_engine import require_ray

        require_ray()  # before any work: say which extra is missing
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown and not args.load:
        return _usage_error(f"unknown detector(s) {', '.join(unknown)}; choose from "
                            f"{', '.join(sorted(DETECTORS))}")
    targets = read_transcripts(args.files)
    reference = read_transcripts([args.reference]) if args.reference else []
    train = read_transcripts([args.train]) if args.train else []
    fitted_on = {(t.prompt, t.text): t.id for t in reference + train}
    overlap = [t.id for t in targets if (t.prompt, t.text) in fitted_on]
    if overlap and not args.allow_overlap:
        return _usage_error(
            f"{len(overlap)} transcripts to score are also in the fitting data (first: "
            f"{overlap[0]!r}); scores on them would be optimistic. Split by prompt, or pass "
            "--allow-overlap if you mean it. Nothing was written.")
    lm = None
    need_lm = args.load or any(getattr(DETECTORS[n], "needs_lm", True) for n in names)
    if need_lm:
        lm = load_lm(args.model, device=args.device)
    config = {"detectors": {}, "files": list(args.files), "reference": args.reference,
              "train": args.train, "model": lm.name if lm else None, "engine": args.engine}
    try:
        fitted = []
        for name in names:
            det = _fitted_detector(name, args, lm, reference, train)
            if isinstance(det, str):
                return _usage_error(det)
            fitted.append(det)
            config["detectors"][name] = {"params": {k: v for k, v in det.get_params().items()
                                                    if k != "lm"}}
        if args.engine == "ray":
            from .ray_engine import cluster_summary, score_on_ray

            print(cluster_summary())
            started = time.perf_counter()
            all_scores, nodes = score_on_ray(targets, fitted, model=args.model,
                                             device=args.device, actors=args.actors,
                                             batch_size=args.batch_size)
            elapsed = time.perf_counter() - started
            config.update(actors=args.actors, ray_nodes=nodes, score_seconds=round(elapsed, 3))
            print(f"{len(fitted)} detector(s) scored {len(targets)} transcripts on "
                  f"{args.actors} ray actor(s) on {nodes} node(s) in {elapsed:.1f} s")
        else:
            all_scores = {}
            for det in fitted:
                started = time.perf_counter()
                all_scores[det.name] = det.score(targets)
                elapsed = time.perf_counter() - started
                config["detectors"][det.name]["score_seconds"] = round(elapsed, 3)
                print(f"{det.name:<16} scored {len(targets)} transcripts in {elapsed:.1f} s")
        for name, scores in all_scores.items():
            for t, s in zip(targets, scores):
                t.scores[name] = float(s)
    except DetectorError as err:
        print(f"latentcode detect: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    write_transcripts(args.out, targets)
    write_json(str(args.out) + ".config.json", config)
    if args.save:
        for det in fitted:
            det.save(Path(args.save) / det.name)
    print(f"wrote {len(targets)} scored transcripts to {args.out}")
    return 0


def _fitted_detector(name: str, args: argparse.Namespace, lm, reference, train):
    """The detector ``name``, loaded from ``--load`` or fitted here; a usage message (str)
    when the data it needs were not given."""
    from detectors import load_detector, make_detector

    if args.load:
        return load_detector(Path(args.load) / name, lm=lm)
    det = make_detector(name, lm=lm)
    if det.needs_labels:
        if not train:
            return f"detector {name!r} is supervised: give --train (labelled transcripts)"
        return det.fit(train)
    clean = reference or [t for t in train if t.label == 0]
    if not clean:
        return (f"detector {name!r} fits on clean text: give --reference (clean transcripts) "
                "or --train with label 0")
    return det.fit(clean)


def cmd_report(args: argparse.Namespace) -> int:
    """Write report.html, metrics.json and figures for scored, labelled transcripts."""
    from .report import ReportInputError, build_report

    try:
        out = build_report(args.files, args.out, compare=args.compare, n_boot=args.n_bootstrap,
                           seed=args.seed, n_examples=args.examples)
    except ReportInputError as err:
        print(f"latentcode report: {err}\nnothing was written.", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {out / 'report.html'} (numbers in {out / 'metrics.json'})")
    return 0


def _parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs, each value read as TOML (so 1e-3, true, "text" and [..] work)."""
    import tomllib

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: write key=value, e.g. --set rl.lr=1e-3")
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw  # a bare word: a string
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """Train a hiding policy (or, with --probe-only, measure the default signal)."""
    from .channel.config import ConfigError, load_config
    from .channel.trainer import RunFolderError, probe_default_signal, train

    try:
        overrides = _parse_overrides(args.set)
        if args.steps is not None:
            overrides["rl.steps"] = args.steps
        if args.regime is not None:
            overrides["regime"] = args.regime
        cfg = load_config(args.config, overrides)
    except (ConfigError, ValueError) as err:
        return _usage_error(str(err))
    try:
        if args.probe_only:
            result = probe_default_signal(cfg, args.out)
            print(f"default signal: held-out accuracy {result['accuracy']:.3f} (chance "
                  f"{result['chance']:.3f}, p = {result['p_value_above_chance']:.3g}); "
                  f"wrote {Path(args.out) / 'probe.json'}")
            return 0
        summary = train(cfg, args.out)
    except (RunFolderError, ValueError) as err:
        return _usage_error(str(err))
    if int(os.environ.get("RANK", "0")) != 0:  # accelerate launch: the main process reports
        return 0
    final = summary["final_eval"] or {}
    flags = ", ".join(f"{k.split('/', 1)[1]} flags {v:.2f}" for k, v in final.items()
                      if k.startswith("flagged/"))
    print(f"step {summary['steps_done']}/{summary['steps']}: held-out accuracy "
          f"{final.get('accuracy', float('nan')):.3f}{'; ' + flags if flags else ''}; "
          f"run folder {args.out}")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    """The measurements of instrumentality for a finished run (also taken when it finishes)."""
    from .channel.config import from_dict
    from .channel.measure import measure_run
    from .channel.runlog import finished_run_config

    run = Path(args.run)
    try:
        cfg = from_dict(finished_run_config(run))
    except FileNotFoundError as err:
        return _usage_error(str(err))
    detectors = (cfg.measure.detectors if args.detectors is None
                 else [d.strip() for d in args.detectors.split(",") if d.strip()])
    result = measure_run(run, detectors=detectors, n_boot=cfg.measure.bootstrap)
    cap = result["capacity"]
    print(f"accuracy {result['accuracy']:.3f}; {cap['bits']:.3f} bits/response "
          f"(95% CI {cap['ci_low']:.3f}-{cap['ci_high']:.3f}); half of the gain by token "
          f"{result['half_position']}; best detector "
          f"{result.get('best_detector', '-')} {result.get('best_auroc', float('nan')):.3f}; "
          f"wrote {run / 'instrumentality.json'}")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    """Every listed regime on one task under one budget, over seeds (resumable)."""
    from .channel.config import ConfigError
    from .channel.zoo import load_zoo, run_zoo

    try:
        zoo = load_zoo(args.config)
        run_zoo(zoo, args.out, progress=not args.quiet)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        return _usage_error(str(err))
    print((Path(args.out) / "zoo.md").read_text())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check transcript files and summarise them; every problem is listed, exit status 2."""
    from collections import Counter

    from .transcripts import read_transcripts

    transcripts = read_transcripts(args.files, max_line_bytes=args.max_line_bytes)
    by_source = Counter((t.source or "(none)", t.label) for t in transcripts)
    scored = Counter(name for t in transcripts for name in t.scores)
    print(f"{len(transcripts)} transcripts OK in {len(args.files)} file(s)")
    print(f"{'source':<24} {'label':>5} {'count':>7}")
    for (source, label), count in sorted(by_source.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"{source:<24} {'?' if label is None else label:>5} {count:>7}")
    if scored:
        print("scores: " + ", ".join(f"{k} ({v})" for k, v in sorted(scored.items())))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Scored transcripts (any readable format) as one Parquet file for pandas/polars."""
    from .export import write_parquet
    from .transcripts import read_transcripts

    transcripts = read_transcripts(args.files)
    write_parquet(args.out, transcripts)
    detectors = sorted({n for t in transcripts for n in t.scores})
    print(f"wrote {len(transcripts)} transcripts to {args.out} (score columns: "
          f"{', '.join('scores.' + d for d in detectors) or 'none'})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job end to end: codecs and a trained policy, every detector, the report."""
    from .demo import DemoConfig, DemoFolderError, run_demo

    def names(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]

    defaults = DemoConfig()
    cfg = DemoConfig(n_train=args.n_train, n_test=args.n_test, clean_multiple=args.clean_multiple,
                     max_new_tokens=args.max_new_tokens,
                     sources=names(args.sources) if args.sources else defaults.sources,
                     detectors=names(args.detectors) if args.detectors else defaults.detectors,
                     policy_steps=args.policy_steps, seed=args.seed, model=args.model or "",
                     prompts=args.prompts)
    started = time.perf_counter()
    try:
        run_demo(cfg, args.out, progress=not args.quiet)
    except (DemoFolderError, ValueError) as err:
        return _usage_error(str(err))
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentcode",
        description="Train, detect and report latent codes hidden in language-model text.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sample", help="write clean (label 0) transcripts by plain sampling")
    _add_prompt_args(p)
    p.add_argument("--n", type=int, default=200, help="number of transcripts")
    p.add_argument("--out", required=True, help="output JSONL (written atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_sampling_args(p)
    _add_model_args(p)
    _add_engine_args(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("encode", help="hide random payloads with a reference codec")
    p.add_argument("--codec", required=True,
                   help="huffman, arithmetic, meteor, discop or sparsamp (zero KL: discop, sparsamp); "
                        "null: the same sampling with nothing hidden (label 0, matched clean text)")
    _add_prompt_args(p)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--payload-bits", type=int, default=64)
    p.add_argument("--key-file", required=True, help="any file; its SHA-256 is the key")
    p.add_argument("--out", required=True)
    p.add_argument("--allow-partial", action="store_true",
                   help="write texts that ended before their payload was embedded")
    p.add_argument("--quiet", action="store_true")
    _add_sampling_args(p)
    p.set_defaults(max_new_tokens=128)
    _add_model_args(p)
    _add_engine_args(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="recover payloads from codec transcripts")
    p.add_argument("files", nargs="+")
    p.add_argument("--codec", default=None, help="default: each transcript's meta.codec")
    p.add_argument("--key-file", required=True)
    _add_model_args(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("detect", help="score transcripts with detectors (adds 'scores')")
    p.add_argument("files", nargs="+", help="transcripts to score")
    p.add_argument("--detectors", default="distribution",
                   help="comma-separated registered names (see detectors/)")
    p.add_argument("--reference", default=None, help="clean transcripts to fit unsupervised detectors")
    p.add_argument("--train", default=None, help="labelled transcripts to fit supervised detectors")
    p.add_argument("--out", required=True, help="scored transcripts (JSONL, written atomically)")
    p.add_argument("--save", default=None, help="folder to save the fitted detectors in")
    p.add_argument("--load", default=None, help="folder of fitted detectors (skip fitting)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="score transcripts that are also in the fitting data")
    _add_model_args(p)
    _add_engine_args(p)
    p.add_argument("--batch-size", type=int, default=64,
                   help="transcripts per batch sent to a ray actor (--engine ray)")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("train", help="train a hiding policy (sender + receiver under RL)")
    p.add_argument("--config", default=None, help="TOML config (see configs/); defaults otherwise")
    p.add_argument("--out", required=True, help="run folder (resumed when it holds this config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set rl.gamma=0.9 (repeatable)")
    p.add_argument("--steps", type=int, default=None, help="shorthand for --set rl.steps=N")
    p.add_argument("--regime", default=None,
                   help="rl, rl-out-token, conditioned, dpo or distill (shorthand for --set regime=NAME)")
    p.add_argument("--probe-only", action="store_true",
                   help="no training: can the receiver read the frozen sender at all?")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("measure", help="where a trained sender's code lives, what it carries, "
                                       "how well it hides (instrumentality.json)")
    p.add_argument("run", help="a finished `latentcode train` run folder")
    p.add_argument("--detectors", default=None,
                   help="comma-separated (default: the run config's measure.detectors)")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("zoo", help="compare training regimes on one task under one budget")
    p.add_argument("--config", default="configs/zoo.toml", help="zoo config (TOML)")
    p.add_argument("--out", default="runs/zoo", help="zoo folder (resumed run by run)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("report", help="ROC report (HTML, metrics.json, figures) from scored transcripts")
    p.add_argument("files", nargs="+", help="scored, labelled transcripts (from latentcode detect)")
    p.add_argument("--out", required=True, help="report folder (replaced atomically)")
    p.add_argument("--compare", default=None, help="another report's metrics.json to set beside")
    p.add_argument("--n-bootstrap", type=int, default=2000, help="resamples for the AUROC CI")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--examples", type=int, default=3,
                   help="most and least suspicious transcripts shown per detector")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("validate", help="check transcript files and summarise them")
    p.add_argument("files", nargs="+", help=FILES_HELP)
    p.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("export", help="write (scored) transcripts as Parquet for pandas/polars")
    p.add_argument("files", nargs="+", help=FILES_HELP)
    p.add_argument("--out", required=True, help="Parquet file (written atomically)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the main job end to end on the embedded model")
    p.add_argument("--out", default="runs/demo", help="run folder (resumed when it exists)")
    p.add_argument("--prompts", default=str(DEFAULT_PROMPTS))
    p.add_argument("--n-train", type=int, default=24, help="transcripts per source, train half")
    p.add_argument("--n-test", type=int, default=32, help="transcripts per source, test half")
    p.add_argument("--clean-multiple", type=int, default=3,
                   help="clean test transcripts per source's test transcripts")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--sources", default="", help="codec sources, comma-separated (default: all)")
    p.add_argument("--detectors", default="", help="comma-separated (default: the battery)")
    p.add_argument("--policy-steps", type=int, default=24,
                   help="RL steps of the hiding policy (0: leave it out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None,
                   help="HF id or local folder or .gguf already on disk (default: embedded)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def _usage_error(message: str) -> int:
    print(f"latentcode: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("n", "n_train", "n_test", "max_new_tokens", "batch_size", "payload_bits",
                 "n_bootstrap", "examples", "actors"):
        if getattr(args, name, 1) < 1:
            return _usage_error(f"--{name.replace('_', '-')} must be at least 1")
    if getattr(args, "temperature", 0) < 0:
        return _usage_error("--temperature must be >= 0 (0 is greedy)")
    if not 0 < getattr(args, "top_p", 1) <= 1:
        return _usage_error("--top-p must be in (0, 1]")
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


if __name__ == "__main__":
    sys.exit(main())
