"""``train``, ``measure``, ``zoo``, ``arms-race`` and ``demo``: learned channels (a hiding
policy, its measurements, the regime zoo, the arms race) and the whole story end to end."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..prompts import DEFAULT_PROMPTS
from .common import usage_error


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
    from ..channel.config import ConfigError, load_config
    from ..channel.runlog import flag_rates
    from ..channel.trainer import RunFolderError, probe_default_signal, train

    try:
        overrides = _parse_overrides(args.set)
        if args.steps is not None:
            overrides["rl.steps"] = args.steps
        if args.regime is not None:
            overrides["regime"] = args.regime
        cfg = load_config(args.config, overrides)
    except (ConfigError, ValueError) as err:
        return usage_error(str(err))
    try:
        if args.probe_only:
            result = probe_default_signal(cfg, args.out)
            print(f"default signal: held-out accuracy {result['accuracy']:.3f} (chance "
                  f"{result['chance']:.3f}, p = {result['p_value_above_chance']:.3g}); "
                  f"wrote {Path(args.out) / 'probe.json'}")
            for key in [k for k in result if k.startswith("accuracy/")]:
                name = key.split("/", 1)[1]
                print(f"  {name} receiver: {result[key]:.3f} "
                      f"(p = {result['p_value_above_chance/' + name]:.3g})")
            return 0
        summary = train(cfg, args.out)
    except (RunFolderError, ValueError) as err:
        return usage_error(str(err))
    if int(os.environ.get("RANK", "0")) != 0:  # accelerate launch: the main process reports
        return 0
    final = summary["final_eval"] or {}
    flags = ", ".join(f"{name} flags {v:.2f}" for name, v in flag_rates(final).items())
    print(f"step {summary['steps_done']}/{summary['steps']}: held-out accuracy "
          f"{final.get('accuracy', float('nan')):.3f}{'; ' + flags if flags else ''}; "
          f"run folder {args.out}")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    """The measurements of instrumentality for a finished run (also taken when it finishes)."""
    from ..channel.config import from_dict
    from ..channel.measure import measure_run
    from ..channel.runlog import finished_run_config

    run = Path(args.run)
    try:
        cfg = from_dict(finished_run_config(run))
    except FileNotFoundError as err:
        return usage_error(str(err))
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
    from ..channel.config import ConfigError
    from ..channel.zoo import load_zoo, run_zoo

    try:
        zoo = load_zoo(args.config)
        run_zoo(zoo, args.out, progress=not args.quiet)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        return usage_error(str(err))
    print((Path(args.out) / "zoo.md").read_text())
    return 0


def cmd_arms_race(args: argparse.Namespace) -> int:
    """One sender per monitor set, then every detector against every sender (resumable)."""
    from ..channel.arms import load_arms, run_arms
    from ..channel.config import ConfigError

    try:
        run_arms(load_arms(args.config), args.out, progress=not args.quiet)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        return usage_error(str(err))
    print((Path(args.out) / "arms.md").read_text())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job end to end: codecs and a trained policy, every detector, the report."""
    from ..demo import DemoConfig, DemoFolderError, run_demo

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
        return usage_error(str(err))
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


def add_train(sub) -> None:
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


def add_measure(sub) -> None:
    p = sub.add_parser("measure", help="where a trained sender's code lives, what it carries, "
                                       "how well it hides (instrumentality.json)")
    p.add_argument("run", help="a finished `latentcode train` run folder")
    p.add_argument("--detectors", default=None,
                   help="comma-separated (default: the run config's measure.detectors)")
    p.set_defaults(func=cmd_measure)


def add_zoo(sub) -> None:
    p = sub.add_parser("zoo", help="compare training regimes on one task under one budget")
    p.add_argument("--config", default="configs/zoo.toml", help="zoo config (TOML)")
    p.add_argument("--out", default="runs/zoo", help="zoo folder (resumed run by run)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_zoo)


def add_arms_race(sub) -> None:
    p = sub.add_parser("arms-race", help="train senders against monitors, then score every "
                                         "sender with every detector (the transfer matrix)")
    p.add_argument("--config", default="configs/arms-race.toml", help="arms-race config (TOML)")
    p.add_argument("--out", default="runs/arms", help="arms-race folder (resumed run by run)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_arms_race)


def add_demo(sub) -> None:
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
