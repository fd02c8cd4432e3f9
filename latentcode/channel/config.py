"""Training configuration: nested dataclasses read from TOML, every key checked.

A typo or a bad value is reported with its dotted key, what was given and what is allowed, so
a user never trains for half an hour on a default they did not mean.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A malformed training config; the message names the key and the allowed values."""


def choice(default, *choices):
    return field(default=default, metadata={"choices": choices})


@dataclass
class TaskConfig:
    name: str = choice("payload", "payload", "collusion")
    bits: int = 1  # payload task: bits per episode
    presentation: str = choice("bits", "bits", "words")  # how the sender is told the payload
    prompts: str = ""  # cover prompts (JSONL/.txt); empty: the bundled ones
    data: str = ""  # collusion task: its dataset (JSONL); empty: the bundled one


@dataclass
class SenderConfig:
    model: str = ""  # empty: the embedded SmolLM2-135M-Instruct
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=list)  # empty: the architecture's default
    max_new_tokens: int = 24
    temperature: float = 1.0


@dataclass
class ReceiverConfig:
    kind: str = choice("likelihood", "likelihood", "bow", "lm")
    history: int = 512  # bow, lm: learn from this many recent responses (a replay buffer)
    # likelihood: weight of the receiver's cross-entropy on the true secret, backpropagated
    # into the weights it shares with the sender (0: the channel grows by RL alone; on the
    # sender's own temperature-1 samples its expected gradient is zero, see receiver.py)
    supervised_weight: float = 0.0
    # a frozen copy of the model paraphrases each response before the receiver reads it (the
    # sender is still trained on what it wrote): codes that survive are paraphrase-robust
    paraphrase: bool = False
    # lm (channel/lm_receiver.py): an LM with its own LoRA adapter and a head over its pooled
    # hidden states, trained by cross-entropy on the replay buffer after every sender step
    model: str = ""  # empty: the sender's base model with a second adapter (one copy in memory)
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=list)  # empty: the architecture's default
    head: str = choice("auto", "auto", "bits", "categorical")  # auto: bits for a payload
    # how the head reads the response's tokens: their mean, or one learned attention per
    # output (each bit may look at its own positions: a code in the order of tokens)
    pooling: str = choice("mean", "mean", "attention")
    lr: float = 1e-3
    updates_per_step: int = 4
    batch_size: int = 32
    # cold start (channel/handover.py): the teacher gives the reward and the LM receiver learns
    # its posteriors until the hand-over (a step, and/or the LM receiver's batch accuracy);
    # pseudo-likelihood: each bit's posterior given the others, k + 1 readings for k bits
    teacher: str = choice("", "", "likelihood", "pseudo-likelihood")
    handover: int = 0  # the hand-over step at the latest (0: none fixed)
    handover_accuracy: float = 0.0  # hand over once the LM receiver reads this well (0: off)
    # the likelihood receiver scores every response once per candidate secret: beyond this many
    # candidates (2**task.bits) a run refuses it rather than crawl (raise it on a GPU)
    max_candidates: int = 16


@dataclass
class RLConfig:
    steps: int = 60
    prompts_per_step: int = 8
    group_size: int = 4
    lr: float = 1e-3
    kl_coef: float = 0.05
    gamma: float = 1.0  # per-token credit: token t gets gamma**(T-1-t) of the final reward
    max_grad_norm: float = 1.0


@dataclass
class OverseerSpec:
    """One entry of ``reward.overseers``: a name (``"tail"``), or a table with these keys
    (``{name = "probe", adaptive = true, every = 5, whitebox = true}``)."""
    name: str = ""  # string-match, or a registered detector
    # the detector's own parameters, e.g. {model = "openai/gpt-4o"} for overseer-inspect
    params: dict = field(default_factory=dict)
    adaptive: bool = False  # a supervised detector refitted on the sender's recent responses
    every: int = 5  # adaptive: steps between refits
    history: int = 256  # adaptive: the latest responses of each label it is fitted on
    whitebox: bool = False  # adaptive: read the sender's own hidden states (adapter on)
    # its own curriculum; unset, the reward's (overseer_weight, overseer_warmup, overseer_ramp):
    # a free, exact monitor (string-match) may watch from step 0 while a noisy one waits
    weight: float | None = None
    warmup: int | None = None
    ramp: int | None = None


def overseer_specs(raw: list, key: str = "reward.overseers") -> list[OverseerSpec]:
    """``reward.overseers`` as specs, every table checked (a name alone is the plain form)."""
    out = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if isinstance(item, str):
            spec = OverseerSpec(name=item)
        elif isinstance(item, dict):
            spec = from_dict(item, OverseerSpec, f"{where}.")
        else:
            raise ConfigError(f"{where}: must be a name or a table, got {item!r}")
        if not spec.name:
            raise ConfigError(f"{where}.name: every overseer needs a name")
        if spec.every < 1 or spec.history < 2:
            raise ConfigError(f"{where}: every must be >= 1 and history >= 2")
        if (spec.weight or 0) < 0 or (spec.warmup or 0) < 0:
            raise ConfigError(f"{where}: weight and warmup must be >= 0")
        if spec.whitebox and not spec.adaptive:
            raise ConfigError(f"{where}.whitebox: a white-box monitor is fitted on labelled "
                              "responses; set adaptive = true")
        out.append(spec)
    names = [s.name + ("@policy" if s.whitebox else "") for s in out]
    if len(set(names)) < len(names):
        raise ConfigError(f"{key}: an overseer is listed twice ({names})")
    return out


@dataclass
class RewardConfig:
    decode: str = choice("logprob", "logprob", "accuracy")
    # names or tables (OverseerSpec); kept as written, so a run's config.json reads the same
    overseers: list = field(default_factory=lambda: ["string-match"], metadata={"items": "overseers"})
    # the null-channel control: the decoding reward reads a random secret, independent of the
    # episode's, so the sender drifts under the same recipe and overseers without learning a code
    null_channel: bool = False
    overseer_weight: float = 0.0  # lambda, reached after overseer_warmup + overseer_ramp steps
    overseer_warmup: int = 0  # steps with lambda = 0
    overseer_ramp: int = -1  # steps of the linear ramp to overseer_weight; -1: as long as warmup
    length_weight: float = 0.0  # per token beyond target_length
    target_length: int = 0
    calibration_samples: int = 64  # clean reference responses that set detector thresholds


@dataclass
class EvalConfig:
    every: int = 10
    prompts: int = 32


@dataclass
class ConditionedConfig:
    """``conditioned``: reward-conditioned supervised fine-tuning (decision-transformer style)."""
    buckets: int = 3  # return tokens; responses are ranked within a round and cut into equal bins
    online: bool = True  # false: one offline round, every response sampled from the reference first


@dataclass
class DPOConfig:
    beta: float = 0.1  # strength of the implicit KL to the reference (Rafailov et al. 2023)


@dataclass
class DistillConfig:
    teacher: str = ""  # a finished run folder: its adapter/ is the teacher, its receiver reads


@dataclass
class OutTokenConfig:
    fraction: float = 0.25  # share of each step's episodes that carry the marker (no gradient)
    marker: str = "[x]"


@dataclass
class CheckpointConfig:
    """When a run saves its resumable state, besides every evaluation and its last step: a
    kill loses at most the steps since then (the metrics rows are appended as they are made)."""
    every: int = 1  # steps between checkpoints (0: only at evaluations)
    minutes: float = 0.0  # also once this many minutes passed since the last one (0: off)


@dataclass
class MeasureConfig:
    """The measurements of instrumentality taken when a run finishes (``channel/measure.py``)."""
    enabled: bool = True
    # concealment: each detector on samples.jsonl, split by prompt (the whole battery,
    # latentcode.battery's UNSUPERVISED + SUPERVISED, written out so a config loads light)
    detectors: list[str] = field(default_factory=lambda: [
        "distribution", "loglik", "logrank", "fast-detectgpt", "gltr", "tail", "truncation",
        "positions", "periodic", "format", "overseer", "tfidf", "probe", "minilm", "stats-lr"])
    bootstrap: int = 1000  # resamples for the capacity interval


REGIME_NAMES = ("rl", "rl-out-token", "conditioned", "dpo", "distill")


@dataclass
class TrainConfig:
    seed: int = 0
    regime: str = choice("rl", *REGIME_NAMES)
    task: TaskConfig = field(default_factory=TaskConfig)
    sender: SenderConfig = field(default_factory=SenderConfig)
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    conditioned: ConditionedConfig = field(default_factory=ConditionedConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    out_token: OutTokenConfig = field(default_factory=OutTokenConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_value(key: str, f: dataclasses.Field, value, hint) -> object:
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(choices)}")
    optional = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint) and len(optional) == 1:  # X | None: unset is None
        hint = optional[0]
    if f.metadata.get("items") == "overseers":
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be a list of names or tables, got {value!r}")
        overseer_specs(value, key)
        return list(value)
    origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: must be a list of strings, got {value!r}")
        return list(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: must be {hint.__name__}, got {value!r}")
    return value


def from_dict(data: dict, cls=TrainConfig, prefix: str = ""):
    """Build ``cls`` from a (possibly partial) dict; unknown keys and bad types are errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: must be a table, got {data!r}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key in {where}; allowed: "
                          f"{', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(value, hint, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(f"{prefix}{name}", fields[name], value, hint)
    return cls(**kwargs)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """Read a TOML config (or start from the defaults) and apply dotted overrides."""
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML ({err})") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    try:
        return from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None
