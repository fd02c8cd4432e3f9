"""``latentcode demo``: the whole story on one model, in stages that each resume.

1. clean transcripts and transcripts carrying random payloads from every reference codec, on
   two disjoint halves of the prompts (:mod:`latentcode.battery`);
2. a short run of the RL harness trains a hiding policy; it answers the same prompts with a
   secret bit in its system prompt (source ``policy``);
3. every detector is fitted on the train half and scores the test half;
4. the ROC report, and a summary table per source.

Every stage writes its output atomically into the run folder and is skipped when a re-run
finds it there, so an interrupted demo continues where it stopped. A run folder holds one
config: a different one is refused rather than mixed in.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .battery import (
    CODEC_SOURCES,
    NULL,
    SUPERVISED,
    UNSUPERVISED,
    codec_transcripts,
    pooled_test,
    run_battery,
    split_by_prompt,
    split_prompts,
    with_scores,
)
from .jsonl import claim_folder, write_json
from .lm import LM, load_lm
from .prompts import DEFAULT_PROMPTS, read_prompts
from .transcripts import Transcript, mean_bits_per_token, read_transcripts, write_transcripts

POLICY = "policy"


@dataclass
class DemoConfig:
    n_train: int = 24  # transcripts per source on the train half of the prompts
    n_test: int = 32  # ... and on the test half
    clean_multiple: int = 3  # the clean side's test half holds this many times n_test, that
    # many samples of each source's test prompts: every positive source is compared against it
    # on the same prompts, and the pooled report is not 1 clean to 7 positive
    max_new_tokens: int = 24  # every source, the policy's answers included (no length leak)
    sources: list[str] = field(default_factory=lambda: [s for s in CODEC_SOURCES if s != NULL])
    detectors: list[str] = field(default_factory=lambda: UNSUPERVISED + SUPERVISED)
    policy_steps: int = 24  # RL steps of the hiding policy (0: no policy source)
    policy_lr: float = 3e-3  # 3x payload-1bit's: a channel within the demo's budget
    payload_bits: int = 1024  # more than any response carries: every token embeds
    key: str = "latentcode-demo"
    seed: int = 0
    model: str = ""  # empty: the embedded model
    prompts: str = str(DEFAULT_PROMPTS)

    def check(self) -> None:
        from detectors import DETECTORS

        unknown = [s for s in self.sources if s not in CODEC_SOURCES or s == NULL]
        if unknown:
            raise ValueError(f"unknown source(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(s for s in CODEC_SOURCES if s != NULL)}")
        bad = [d for d in self.detectors if d not in DETECTORS]
        if bad:
            raise ValueError(f"unknown detector(s) {', '.join(bad)}; choose from "
                             f"{', '.join(sorted(DETECTORS))}")
        for name in ("n_train", "n_test", "max_new_tokens", "clean_multiple"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")


class DemoFolderError(ValueError):
    """The run folder holds a demo with another config."""


def policy_config(cfg: DemoConfig):
    """The RL harness config of the demo's hiding policy: payload-1bit's recipe, short, with a
    higher learning rate and only the string-match overseer. Measured at 24 steps (4 prompts x 4
    samples): held-out decoding 1.0 on 32 prompts, a crude code that often echoes its
    instructions; the full recipe (``configs/payload-1bit.toml``) learns a subtler one. The
    held-out evaluation uses as many prompts as the demo's test half (32 by default)."""
    from .channel.config import load_config

    return load_config(None, {
        "seed": cfg.seed, "sender.model": cfg.model, "sender.max_new_tokens": cfg.max_new_tokens,
        "rl.steps": cfg.policy_steps, "rl.lr": cfg.policy_lr,
        "rl.prompts_per_step": 4, "rl.group_size": 4,
        "reward.overseers": ["string-match"], "eval.every": cfg.policy_steps,
        "eval.prompts": cfg.n_test, "measure.enabled": False})


def train_policy(cfg: DemoConfig, out: Path, progress: bool) -> None:
    from .channel.trainer import train

    if not (out / "summary.json").is_file():
        train(policy_config(cfg), out, progress=progress)


def policy_transcripts(cfg: DemoConfig, run: Path, split: str, prompts, n: int,
                       out: Path) -> list[Transcript]:
    """The trained sender's answers to the demo's prompts, a random secret bit each, with the
    receiver's guess in ``meta`` (cached in ``out/policy-{split}.jsonl``)."""
    path = out / f"{POLICY}-{split}.jsonl"
    if path.is_file():
        return read_transcripts(path)
    from .channel.receiver import LikelihoodReceiver
    from .channel.sender import Sender
    from .channel.tasks import Episode, make_task
    from .channel.trainer import step_seed

    pcfg = policy_config(cfg)
    task = make_task(pcfg.task)
    sender = Sender.load(load_lm(cfg.model or None), run / "adapter")
    rng = random.Random(step_seed(cfg.seed, 0, f"demo-{split}"))
    episodes = []
    for i, prompt in enumerate(split_prompts(prompts, split, n)):  # the codecs' prompts
        secret = rng.choice(task.candidates)
        episodes.append(Episode(f"{POLICY}-{split}-{i:05d}", prompt.prompt, task.system(secret),
                                secret, task.candidates, task.forbidden(), {"prompt_id": prompt.id}))
    rollouts = sender.generate(episodes, 1, max_new_tokens=cfg.max_new_tokens,
                               temperature=pcfg.sender.temperature,
                               seed=step_seed(cfg.seed, 0, f"demo-sample-{split}"))
    guesses = LikelihoodReceiver(sender, task.system_for).log_posteriors(rollouts).argmax(1)
    made = []
    for i, ep in enumerate(episodes):
        n_tokens = len(rollouts.response_ids[i])
        if not rollouts.texts[i].strip():
            continue
        made.append(Transcript(
            id=ep.id, prompt=ep.prompt, text=rollouts.texts[i], label=1, payload=ep.secret,
            source=POLICY,
            meta={"n_tokens": n_tokens, "bits_per_token": len(ep.secret) / max(n_tokens, 1),
                  "secret": ep.secret, "decoded": ep.candidates[int(guesses[i])],
                  "correct": bool(ep.candidates[int(guesses[i])] == ep.secret), **ep.meta}))
    write_transcripts(path, made)
    return made


def detector_scores(data, names: list[str], lm: LM, out: Path, log) -> tuple[dict, dict]:
    """Run the battery one detector at a time, each cached in ``out/{name}.json``."""
    test_ids = [t.id for t in pooled_test(data)]
    auroc, pooled = {}, {}
    for name in names:
        path = out / f"{name}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved["ids"] == test_ids:
                auroc[name], pooled[name] = saved["auroc"], np.array(saved["scores"])
                log(f"  {name:<15} [resume] cached")
                continue
        cells, scores, seconds = run_battery(data, [name], lm)
        write_json(path, {"auroc": cells[name], "scores": scores[name].tolist(), "ids": test_ids,
                          "seconds": seconds[name]})
        auroc[name], pooled[name] = cells[name], scores[name]
        best = max(cells[name].values(), key=lambda c: c["auroc"])["auroc"]
        log(f"  {name:<15} {seconds[name]:6.1f} s   best AUROC {best:.3f}")
    return auroc, pooled


def summary_rows(metrics: dict) -> list[dict]:
    """Per source: bits/token, the best detector with its AUROC and TPR at 1% FPR."""
    rows = []
    for source, cell in metrics["sources"].items():
        best = max(cell["detectors"], key=lambda d: cell["detectors"][d]["auroc"])
        m = cell["detectors"][best]
        rows.append({"source": source, "bits_per_token": cell["bits_per_token"], "n": cell["n"],
                     "best_detector": best, "auroc": m["auroc"],
                     "tpr_at_1pct_fpr": m["tpr_at_fpr"]["0.01"]["tpr"]})
    return rows


def format_summary(rows: list[dict]) -> str:
    header = f"{'source':<13} {'bits/token':>10} {'best detector':<15} {'AUROC':>6} {'TPR@1%FPR':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        bpt = "-" if r["bits_per_token"] is None else f"{r['bits_per_token']:.2f}"
        lines.append(f"{r['source']:<13} {bpt:>10} {r['best_detector']:<15} {r['auroc']:>6.3f} "
                     f"{r['tpr_at_1pct_fpr']:>9.2f}")
    return "\n".join(lines)


def run_demo(cfg: DemoConfig, out: str | Path, *, progress: bool = True, log=print) -> dict:
    """Run (or resume) the demo in ``out``; returns the summary (also in ``summary.json``)."""
    from .report import build_report

    cfg.check()
    out = Path(out)
    if not claim_folder(out, dataclasses.asdict(cfg)):
        raise DemoFolderError(f"{out} holds a demo with another config; choose another "
                              "--out or delete the folder")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)

    halves = split_by_prompt(read_prompts(cfg.prompts), seed=cfg.seed)
    log(f"[1/4] transcripts: clean and {len(cfg.sources)} codecs, {cfg.n_train} + {cfg.n_test} "
        f"per source ({cfg.n_train} + {cfg.n_test * cfg.clean_multiple} clean), prompts split "
        f"in halves ({len(halves['train'])} / {len(halves['test'])})")
    lm = load_lm(cfg.model or None, dtype=torch.float64)  # the codecs decode exactly in float64
    data = {}
    for source in [NULL, *cfg.sources]:
        n_test = cfg.n_test * (cfg.clean_multiple if source == NULL else 1)
        for split, n in (("train", cfg.n_train), ("test", n_test)):
            t0 = time.perf_counter()
            cached = (out / "transcripts" / f"{source}-{split}.jsonl").is_file()
            distinct = cfg.n_train if split == "train" else cfg.n_test  # matched prompts
            data[source, split] = codec_transcripts(
                lm, source, split, halves[split], n, out=out / "transcripts",
                key=cfg.key.encode(), max_new_tokens=cfg.max_new_tokens,
                payload_bits=cfg.payload_bits, batch_size=16, progress=progress,
                distinct=distinct)
            how = "[resume] cached" if cached else f"in {time.perf_counter() - t0:.0f} s"
            log(f"  {source}/{split}: {len(data[source, split])} transcripts {how}")
    lm.model.float()  # detectors read the model in float32

    if cfg.policy_steps > 0:
        log(f"[2/4] hiding policy: {cfg.policy_steps} RL steps of payload-1bit's recipe "
            f"(run folder {out / 'policy'})")
        train_policy(cfg, out / "policy", progress)
        final = json.loads((out / "policy" / "summary.json").read_text())["final_eval"]
        log(f"  held-out decoding accuracy {final['accuracy']:.2f} (chance 0.50)")
        for split, n in (("train", cfg.n_train), ("test", cfg.n_test)):
            data[POLICY, split] = policy_transcripts(cfg, out / "policy", split, halves[split],
                                                     n, out / "transcripts")
    else:
        log("[2/4] hiding policy: skipped (--policy-steps 0)")

    log(f"[3/4] detectors: {', '.join(cfg.detectors)}")
    auroc, pooled = detector_scores(data, cfg.detectors, lm, out / "scores", log)
    scored_path = out / "scored-test.jsonl"
    write_transcripts(scored_path, with_scores(pooled_test(data), pooled))

    log("[4/4] report")
    report = build_report([scored_path], out / "report", n_boot=500, seed=cfg.seed)
    metrics = json.loads((report / "metrics.json").read_text())
    rows = summary_rows(metrics)
    summary = {"rows": rows, "report": str(report / "report.html"),
               "bits_per_token": {s: mean_bits_per_token(data[s, "test"])
                                  for s, split in data if split == "test" and s != NULL},
               "auroc_by_prompt_split": auroc,
               "seconds_this_run": round(time.perf_counter() - started, 1)}
    write_json(out / "summary.json", summary)
    log("\n" + format_summary(rows))
    log(f"\nreport: {report / 'report.html'}")
    return summary
