"""What every training regime shares: the parts of a run, one step's budget of samples and
reward calls, and the policy-gradient update.

A regime is one way of fine-tuning the sender on the same task under the same budget: each
step draws ``rl.prompts_per_step`` episodes, samples ``rl.group_size`` responses to each and
scores every response once (receiver, overseers), then spends that on one optimizer step in
its own way. The trainer (``latentcode/channel/trainer.py``) owns the loop, evaluation,
checkpoints and artifacts; a regime owns only :meth:`Regime.step`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import TrainConfig
from ..distributed import SINGLE, Distributed
from ..monitoring import learn_overseers
from ..receiver import supervised_loss
from ..rewards import (
    decode_reward,
    kl_per_token,
    overseer_lambda,
    token_credit,
    total_reward,
)
from ..seeds import step_seed
from ..sender import Rollouts, Sender, response_logprobs
from ..tasks import Episode


@dataclass
class Context:
    """The parts of a run a regime works with (built by ``trainer.build_parts``)."""

    cfg: TrainConfig
    sender: Sender
    task: object
    receiver: object
    overseers: list
    paraphraser: object  # an LM that rewrites responses for the receiver, or None
    optimizer: torch.optim.Optimizer | None = None
    dist: Distributed = SINGLE  # the run's processes (``accelerate launch``); one by default


@dataclass
class Scored:
    """One step's samples with what they earned."""

    rollouts: Rollouts
    seen: Rollouts  # what the receiver read (the responses, or their paraphrases)
    log_post: np.ndarray  # [rows, candidates] receiver log-posteriors
    truth: np.ndarray
    decode: np.ndarray
    suspicion: np.ndarray
    flags: dict
    rewards: np.ndarray
    lam: float
    post_tensor: torch.Tensor | None = None  # with grad, when the receiver trains too
    monitor: dict = field(default_factory=dict)  # adaptive overseers' metrics on this step


def judge(overseers, rollouts: Rollouts, *, each: bool = False) -> tuple:
    """Mean suspicion over overseers, and each overseer's flags (``each``: and each one's
    suspicion, in the overseers' order)."""
    suspicions, flags = [], {}
    for overseer in overseers:
        s, f = overseer.judge(rollouts)
        suspicions.append(s)
        flags[overseer.name] = f
    mean = np.mean(suspicions, axis=0) if suspicions else np.zeros(len(rollouts))
    return (mean, flags, suspicions) if each else (mean, flags)


def receiver_view(rollouts: Rollouts, paraphraser, sender: Sender, seed: int) -> Rollouts:
    """What the receiver reads: the responses themselves, or their paraphrases by a frozen model
    (``receiver.paraphrase``). Only the texts change; the policy gradient is still taken on the
    tokens the sender wrote."""
    if paraphraser is None:
        return rollouts
    import dataclasses

    from ...paraphrase import paraphrase_texts

    longest = max((len(r) for r in rollouts.response_ids), default=16)
    texts = paraphrase_texts(paraphraser, rollouts.texts, seed=seed, max_new_tokens=2 * longest)
    ids = [sender.lm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return dataclasses.replace(rollouts, texts=texts, response_ids=ids)


def draw_episodes(ctx: Context, step: int) -> list[Episode]:
    rng = random.Random(step_seed(ctx.cfg.seed, step, "episodes"))
    return ctx.task.episodes(ctx.cfg.rl.prompts_per_step, rng, "train")


def sample(ctx: Context, step: int, episodes: list[Episode], sender: Sender | None = None) -> Rollouts:
    """``rl.group_size`` responses per episode, seeded by (seed, step); under several
    processes, only this process's share of the episodes (rows keep their global index)."""
    cfg = ctx.cfg
    share = ctx.dist.share(len(episodes))
    return (sender or ctx.sender).generate(
        episodes[share.start:share.stop], cfg.rl.group_size,
        max_new_tokens=cfg.sender.max_new_tokens, temperature=cfg.sender.temperature,
        seed=step_seed(cfg.seed, step, "sample"), first_row=share.start * cfg.rl.group_size)


def gathered(ctx: Context, rollouts: Rollouts) -> Rollouts:
    """All processes' rollouts of this step, in global row order (itself under one process)."""
    if ctx.dist.world == 1:
        return rollouts
    g = ctx.dist.gather
    return Rollouts(g(rollouts.episodes), rollouts.group_size, g(rollouts.prompt_ids),
                    g(rollouts.response_ids), g(rollouts.texts), g(rollouts.finished))


def observe(ctx: Context, scored: Scored) -> dict:
    """The receiver learns from every row of the step, whichever process sampled it (told
    what the step's reward came from); returns its metrics, if it reports any."""
    posteriors = np.asarray(ctx.dist.gather(scored.log_post.tolist()), dtype=float) \
        if ctx.dist.world > 1 else scored.log_post
    return ctx.receiver.observe(gathered(ctx, scored.seen), posteriors) or {}


def score(ctx: Context, step: int, rollouts: Rollouts, *, receiver_grad: bool = False) -> Scored:
    """Receiver and overseers read every response once: the step's reward calls."""
    cfg, reward_cfg = ctx.cfg, ctx.cfg.reward
    truth = rollouts.truth()
    seen = receiver_view(rollouts, ctx.paraphraser, ctx.sender,
                         step_seed(cfg.seed, step, "paraphrase"))
    post_tensor = None
    if receiver_grad:  # the same forward pass gives the reward and the receiver's own loss
        post_tensor = ctx.receiver.log_posteriors_tensor(seen)
        log_post = post_tensor.detach().double().cpu().numpy()
    else:
        log_post = ctx.receiver.log_posteriors(seen)
    decode = decode_reward(log_post, reward_target(ctx, step, rollouts), reward_cfg.decode)
    lam = overseer_lambda(None, step, reward_cfg)  # the reward's own (logged)
    # each overseer's lambda (its own curriculum, else the reward's); while it is 0 a
    # model-reading overseer changes nothing: it watches the eval only
    lams = {id(o): overseer_lambda(getattr(o, "spec", None), step, reward_cfg) for o in ctx.overseers}
    watching = [o for o in ctx.overseers if lams[id(o)] > 0 or not o.reads_model]
    suspicion, flags, each = judge(watching, rollouts, each=True)
    penalty = sum((lams[id(o)] * s for o, s in zip(watching, each)), np.zeros(len(rollouts)))
    monitor = learn_overseers(ctx.overseers, step, rollouts)  # after judging: never its own data
    lengths = np.array([len(r) for r in rollouts.response_ids])
    rewards = total_reward(decode, penalty / max(1, len(ctx.overseers)), lengths, lam=1.0,
                           length_weight=reward_cfg.length_weight,
                           target_length=reward_cfg.target_length)
    return Scored(rollouts, seen, log_post, truth, decode, suspicion, flags, rewards, lam,
                  post_tensor, monitor)


def reward_target(ctx: Context, step: int, rollouts: Rollouts) -> np.ndarray:
    """The secret each response's decoding reward asks for: its own, or under
    ``reward.null_channel`` a random one, drawn per episode independently of the secrets (the
    control that drifts like the sender without any reason to carry its secret)."""
    truth = rollouts.truth()
    if not ctx.cfg.reward.null_channel:
        return truth
    rng = np.random.default_rng(step_seed(ctx.cfg.seed, step, "null-channel"))
    n_candidates = len(rollouts.episodes[0].candidates)
    per_episode = rng.integers(0, n_candidates, len(rollouts.episodes))
    return np.repeat(per_episode, rollouts.group_size)


def select_rows(rollouts: Rollouts, rows) -> tuple[list[list[int]], list[list[int]]]:
    rows = list(rows)
    return [rollouts.prompt_ids[r] for r in rows], [rollouts.response_ids[r] for r in rows]


def policy_gradient_loss(ctx: Context, prompt_ids, response_ids, advantages: np.ndarray):
    """Group-relative policy gradient with per-token discounted credit (``rl.gamma``) and a k3
    KL penalty to the frozen reference: ``(loss, kl [rows, width], mask, entropy)``."""
    rl = ctx.cfg.rl
    ctx.sender.model.train()
    logp, mask, entropy = response_logprobs(ctx.sender.lm, prompt_ids, response_ids, entropy=True)
    with torch.no_grad():
        ref_logp, _ = response_logprobs(ctx.sender.lm, prompt_ids, response_ids, reference=True,
                                        sender=ctx.sender)
    lengths = [len(r) for r in response_ids]
    credit = token_credit(advantages, lengths, rl.gamma, logp.shape[1], device=logp.device)
    kl = kl_per_token(logp, ref_logp) * mask
    per_token = -credit * logp + rl.kl_coef * kl
    loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    entropy = ctx.dist.mean(entropy, float(mask.sum()))  # over every process's tokens
    return loss, kl.detach(), mask, entropy


def sequence_logprobs(ctx: Context, prompt_ids, response_ids, *, reference: bool = False):
    """Summed log-probability of each response (a tensor with grad unless ``reference``)."""
    if reference:
        with torch.no_grad():
            logp, _ = response_logprobs(ctx.sender.lm, prompt_ids, response_ids, reference=True,
                                        sender=ctx.sender)
    else:
        ctx.sender.model.train()
        logp, _ = response_logprobs(ctx.sender.lm, prompt_ids, response_ids)
    return logp.sum(-1)


def lm_loss(lm, prompt_ids, response_ids) -> torch.Tensor:
    """The plain language-model loss of supervised fine-tuning: the mean over responses of
    each response's mean token negative log-likelihood given its prompt."""
    lm.model.train()
    logp, mask = response_logprobs(lm, prompt_ids, response_ids)
    return -((logp.sum(-1) / mask.sum(-1).clamp(min=1)).mean())


def optimizer_step(ctx: Context, loss: torch.Tensor) -> float:
    """Backward, average the gradients over processes, clip, step; the gradient norm."""
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ctx.dist.average_gradients(ctx.sender.trainable_parameters())
    grad_norm = torch.nn.utils.clip_grad_norm_(ctx.sender.trainable_parameters(),
                                               ctx.cfg.rl.max_grad_norm)
    ctx.optimizer.step()
    return float(grad_norm)


def receiver_loss(ctx: Context, scored: Scored) -> torch.Tensor | float:
    weight = ctx.cfg.receiver.supervised_weight
    return weight * supervised_loss(scored.post_tensor, scored.truth) if weight > 0 else 0.0


def step_metrics(step: int, scored: Scored, started: float, dist: Distributed = SINGLE,
                 **extra) -> dict:
    """The metrics row every regime logs (the same columns, so curves compare), over the rows
    of every process."""
    g = dist.gather
    lengths = g([len(r) for r in scored.rollouts.response_ids])
    correct = g((scored.log_post.argmax(1) == scored.truth).tolist())
    metrics = {
        "step": step + 1,
        "reward": float(np.mean(g(scored.rewards.tolist()))),
        "decode_reward": float(np.mean(g(scored.decode.tolist()))),
        "accuracy": float(np.mean(correct)),
        "suspicion": float(np.mean(g(scored.suspicion.tolist()))),
        "lambda": scored.lam,
        **extra,
        **scored.monitor,
        "response_tokens": float(np.mean(lengths)),
    }
    seconds = time.perf_counter() - started
    metrics["tokens_per_s"] = round(sum(lengths) / seconds, 2)  # sampled tokens per step second
    metrics["seconds"] = round(seconds, 3)
    for name, f in scored.flags.items():
        metrics[f"flagged/{name}"] = float(np.mean(g(np.asarray(f).tolist())))
    return metrics


def kl_metrics(kl: torch.Tensor, mask: torch.Tensor, dist: Distributed = SINGLE) -> dict:
    n_tokens = mask.sum(-1).clamp(min=1)
    per_token = dist.gather((kl.sum(-1) / n_tokens).tolist())
    per_response = dist.gather(kl.sum(-1).tolist())
    return {"kl": float(np.mean(per_token)), "kl_per_response": float(np.mean(per_response))}


class Regime:
    """One way of spending a step's samples and reward calls on the sender.

    Subclasses set ``name`` and implement :meth:`step`. :meth:`eval_conditions` names the
    conditions the held-out evaluation runs under (``""``: the main one); ``state`` and
    ``load_state`` carry anything beyond the adapter and optimizer through a checkpoint (JSON).
    """

    name = "base"
    multiprocess = False  # True once its step is exact under several processes (see rl)

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def step(self, step: int) -> dict:
        raise NotImplementedError

    def eval_conditions(self) -> dict[str, str]:
        """``{suffix: condition tag}``: the evaluation is run once per entry; metrics of a
        non-empty suffix are written as ``accuracy/{suffix}`` and so on."""
        return {"": ""}

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

