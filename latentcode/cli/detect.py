"""``detect``, ``report``, ``validate`` and ``export``: reading transcripts, scoring them with
detectors, and the ROC report of the scores."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..jsonl import DEFAULT_MAX_LINE_BYTES, write_json
from .common import EXIT_BAD_INPUT, FILES_HELP, add_engine_args, add_model_args, usage_error


def cmd_detect(args: argparse.Namespace) -> int:
    """Fit detectors on reference/training transcripts, score others, write them with scores."""
    from detectors import DETECTORS, DetectorError

    from ..lm import load_lm
    from ..transcripts import read_transcripts, write_transcripts

    if args.engine == "ray":
        from ..ray_engine import require_ray

        require_ray()  # before any work: say which extra is missing
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    if args.load and args.load.startswith("builtin:"):  # one builtin monitor, by its name
        names = [args.load.split(":", 1)[1]]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown and not args.load:
        return usage_error(f"unknown detector(s) {', '.join(unknown)}; choose from "
                            f"{', '.join(sorted(DETECTORS))}")
    try:
        args.params = detector_params(args.param)
    except ValueError as err:
        return usage_error(str(err))
    stray = sorted(set(args.params) - set(names))
    if stray:
        return usage_error(f"-P {stray[0]}.…: {stray[0]} is not among --detectors {','.join(names)}")
    if args.calibrate and not args.save:
        return usage_error("--calibrate sets the thresholds of saved detectors: give --save DIR")
    targets = read_transcripts(args.files)
    reference = read_transcripts([args.reference]) if args.reference else []
    train = read_transcripts([args.train]) if args.train else []
    fitted_on = {(t.prompt, t.text): t.id for t in reference + train}
    overlap = [t.id for t in targets if (t.prompt, t.text) in fitted_on]
    if overlap and not args.allow_overlap:
        return usage_error(
            f"{len(overlap)} transcripts to score are also in the fitting data (first: "
            f"{overlap[0]!r}); scores on them would be optimistic. Split by prompt, or pass "
            "--allow-overlap if you mean it. Nothing was written.")
    white_box = [n for n in names if getattr(DETECTORS.get(n), "reads_policy", False)]
    if white_box and not args.policy:
        return usage_error(f"{white_box[0]} reads a trained sender's own activations: give "
                           "--policy RUN (a finished `latentcode train` folder)")
    if white_box and not ((Path(args.policy) / "config.json").is_file()
                          and (Path(args.policy) / "adapter").is_dir()):
        return usage_error(f"--policy {args.policy}: not a finished `latentcode train` folder "
                           "(it needs config.json and adapter/)")
    if white_box and args.engine == "ray":
        return usage_error(f"{white_box[0]} runs in this process only: drop --engine ray")
    if args.load:  # find every folder, and the model they were fitted under, before loading one
        from ..integrations.monitor import MonitorError

        try:
            args.folders = _loaded_folders(names, args.load)
            args.model = _loaded_model(args.folders, args.model)
        except MonitorError as err:
            return usage_error(str(err))
    lm = None
    need_lm = any(getattr(DETECTORS.get(n), "needs_lm", True) for n in names if n not in white_box)
    if need_lm:
        lm = load_lm(args.model, device=args.device)
    if white_box:
        from ..channel.measure import run_sender

        policy = run_sender(args.policy, args.device).lm
    else:
        policy = None
    config = {"detectors": {}, "files": list(args.files), "reference": args.reference,
              "train": args.train, "model": lm.name if lm else None, "engine": args.engine,
              "policy": args.policy}
    try:
        fitted = []
        for name in names:
            det = _fitted_detector(name, args, policy if name in white_box else lm, reference, train)
            if isinstance(det, str):
                return usage_error(det)
            fitted.append(det)
            config["detectors"][name] = {"params": {k: v for k, v in det.get_params().items()
                                                    if k != "lm"}}
        if args.engine == "ray":
            from ..ray_engine import cluster_summary, score_on_ray

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
        from ..integrations.monitor import save_monitor

        calibration = read_transcripts([args.calibrate]) if args.calibrate else []
        for det in fitted:
            clean = det.score(calibration) if calibration else None
            save_monitor(det, Path(args.save) / det.name,
                         model=lm.name if lm is not None and det.needs_lm else None,
                         clean_scores=clean, calibrated_on=args.calibrate or "")
    print(f"wrote {len(targets)} scored transcripts to {args.out}")
    return 0


def detector_params(items: list[str] | None) -> dict[str, dict]:
    """``-P NAME.KEY=VALUE`` options as {name: {key: value}}; a value is read as JSON when it
    parses (numbers, true, lists), as text otherwise."""
    import json

    out: dict[str, dict] = {}
    for item in items or []:
        target, sep, raw = item.partition("=")
        name, dot, key = target.partition(".")
        if not (sep and dot and name and key):
            raise ValueError(f"-P {item!r}: write NAME.KEY=VALUE (e.g. "
                             "overseer-inspect.model=openai/gpt-4o-mini)")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(name, {})[key] = value
    return out


def _loaded_folders(names: list[str], load: str) -> dict[str, Path]:
    """``--load``'s folder for each detector (MonitorError when one is missing)."""
    from ..integrations.monitor import BUILTIN_PREFIX, resolve

    if load.startswith(BUILTIN_PREFIX):
        return {names[0]: resolve(load)}
    return {n: resolve(f"{BUILTIN_PREFIX}{n}" if load == "builtin" else str(Path(load) / n))
            for n in names}


def _loaded_model(folders: dict[str, Path], model: str | None) -> str | None:
    """The model to read under: ``--model``, else the one the loaded monitors were fitted
    under (their ``monitor.json``); MonitorError when they disagree."""
    from ..integrations.monitor import MonitorError, model_label, read_info, stored_model

    fitted = {n: m for n, folder in folders.items() if (m := read_info(folder).get("model"))}
    if model is not None:
        wrong = [n for n, m in fitted.items() if m != model_label(model)]
        if wrong:
            raise MonitorError(f"--load: {wrong[0]} was fitted under {fitted[wrong[0]]!r}, not "
                               f"--model {model!r}; refit it under that model")
        return model
    if len(set(fitted.values())) > 1:
        raise MonitorError("--load: the monitors were fitted under different models: " + ", ".join(
            f"{n} under {m!r}" for n, m in fitted.items()))
    return stored_model(next(iter(fitted.values()), None))


def _fitted_detector(name: str, args: argparse.Namespace, lm, reference, train):
    """The detector ``name``, loaded from ``--load`` or fitted here; a usage message (str)
    when the data it needs were not given."""
    from detectors import load_detector, make_detector

    if args.load:
        return load_detector(args.folders[name], lm=lm)
    try:
        det = make_detector(name, lm=lm, **args.params.get(name, {}))
    except TypeError as err:  # a -P key the factory does not take
        return f"-P {name}.…: {err}"
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
    from ..report import ReportInputError, build_report

    try:
        out = build_report(args.files, args.out, compare=args.compare, n_boot=args.n_bootstrap,
                           seed=args.seed, n_examples=args.examples)
    except ReportInputError as err:
        print(f"latentcode report: {err}\nnothing was written.", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {out / 'report.html'} (numbers in {out / 'metrics.json'})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check transcript files and summarise them; every problem is listed, exit status 2."""
    from collections import Counter

    from ..transcripts import read_transcripts

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
    from ..export import write_parquet
    from ..transcripts import read_transcripts

    transcripts = read_transcripts(args.files)
    write_parquet(args.out, transcripts)
    detectors = sorted({n for t in transcripts for n in t.scores})
    print(f"wrote {len(transcripts)} transcripts to {args.out} (score columns: "
          f"{', '.join('scores.' + d for d in detectors) or 'none'})")
    return 0


def add_detect(sub) -> None:
    p = sub.add_parser("detect", help="score transcripts with detectors (adds 'scores')")
    p.add_argument("files", nargs="+", help="transcripts to score")
    p.add_argument("--detectors", default="distribution",
                   help="comma-separated registered names (see detectors/)")
    p.add_argument("--reference", default=None, help="clean transcripts to fit unsupervised detectors")
    p.add_argument("--train", default=None, help="labelled transcripts to fit supervised detectors")
    p.add_argument("--out", required=True, help="scored transcripts (JSONL, written atomically)")
    p.add_argument("--save", default=None, help="folder to save the fitted detectors in")
    p.add_argument("-P", "--param", action="append", metavar="NAME.KEY=VALUE",
                   help="a detector's parameter, e.g. -P overseer-inspect.model=openai/gpt-4o-mini "
                        "(repeatable; values are JSON when they parse)")
    p.add_argument("--calibrate", default=None,
                   help="clean transcripts, not the fitting ones, that set each saved "
                        "detector's threshold (flagging 5%% of them) in its monitor.json")
    p.add_argument("--load", default=None,
                   help="folder of fitted detectors (skip fitting); builtin:NAME for one builtin "
                        "monitor (made by `make monitors`), builtin for --detectors among them")
    p.add_argument("--allow-overlap", action="store_true",
                   help="score transcripts that are also in the fitting data")
    p.add_argument("--policy", default=None,
                   help="a finished training run whose sender white-box detectors read "
                        "(policy-probe)")
    add_model_args(p)
    add_engine_args(p)
    p.add_argument("--batch-size", type=int, default=64,
                   help="transcripts per batch sent to a ray actor (--engine ray)")
    p.set_defaults(func=cmd_detect)


def add_report(sub) -> None:
    p = sub.add_parser("report", help="ROC report (HTML, metrics.json, figures) from scored transcripts")
    p.add_argument("files", nargs="+", help="scored, labelled transcripts (from latentcode detect)")
    p.add_argument("--out", required=True, help="report folder (replaced atomically)")
    p.add_argument("--compare", default=None, help="another report's metrics.json to set beside")
    p.add_argument("--n-bootstrap", type=int, default=2000, help="resamples for the AUROC CI")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--examples", type=int, default=3,
                   help="most and least suspicious transcripts shown per detector")
    p.set_defaults(func=cmd_report)


def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check transcript files and summarise them")
    p.add_argument("files", nargs="+", help=FILES_HELP)
    p.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES)
    p.set_defaults(func=cmd_validate)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write (scored) transcripts as Parquet for pandas/polars")
    p.add_argument("files", nargs="+", help=FILES_HELP)
    p.add_argument("--out", required=True, help="Parquet file (written atomically)")
    p.set_defaults(func=cmd_export)
