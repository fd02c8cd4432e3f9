"""Receivers: read the prompt and the response (never the secret) and name the secret.

Each returns, per response, a log-probability for every candidate secret, so the decoding
reward can be the log-probability of the truth or plain accuracy.

- ``likelihood``: the sender's own model scores the response under each candidate's system
  prompt and normalises (a log-likelihood ratio). It shares the sender's weights, so it can
  read a code from the first step; RL-NOTES.md records that this receiver is the one with which
  a channel emerged in minutes on this machine.
- ``bow``: TF-IDF + logistic regression, refitted on the sender's recent responses (the
  supervised receiver of Mathew et al. 2024); starts blind, needs a default signal to grow.
- ``lm``: a language model with its own adapter and head (``lm_receiver.py``), optionally
  warm-started by distilling the likelihood receiver (``handover.py``), or for many bits its
  cheaper pseudo-likelihood (``PseudoLikelihoodReceiver``: k + 1 readings per response).

``observe(rollouts, log_posteriors)`` is called once per step after the batch was scored
(``log_posteriors``: what its reward came from); a receiver that learns may return metrics.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from .sender import Rollouts, Sender, response_logprobs
from .tasks import with_condition


class LikelihoodReceiver:
    name = "likelihood"

    def __init__(self, sender: Sender, system_for, *, privileged: bool = False):
        # privileged: its scoring prompts hold more than the receiver may see (the collusion
        # task's CV), so it may give a reward or teach, never be reported as the decoder
        self.sender, self.system_for, self.privileged = sender, system_for, privileged

    def observe(self, rollouts: Rollouts, log_posteriors=None) -> None:
        """Learns nothing of its own: it moves with the sender's weights."""

    def log_posteriors(self, rollouts: Rollouts, batch_size: int = 64) -> np.ndarray:
        with torch.no_grad():
            return self.log_posteriors_tensor(rollouts, batch_size).double().cpu().numpy()

    @torch.no_grad()
    def prefix_log_posteriors(self, rollouts: Rollouts, max_k: int,
                              batch_size: int = 64) -> np.ndarray:
        """``[max_k, rows, candidates]``: the posterior after reading only the first k tokens
        of each response (k = 1..max_k; a response shorter than k is read whole). The exact
        posterior of a prefix under the sender: nothing to refit, one scoring pass."""
        lm = self.sender.lm
        candidates = rollouts.episodes[0].candidates
        prompts, responses = self._scoring_rows(rollouts, candidates)
        self.sender.model.eval()
        out = []
        for start in range(0, len(prompts), batch_size):
            chunk = responses[start:start + batch_size]
            logp, _ = response_logprobs(lm, prompts[start:start + batch_size], chunk)
            width = logp.shape[1]
            left = torch.zeros((len(chunk), max_k), dtype=torch.float64)
            for i, ids in enumerate(chunk):  # left-align each response's token log-probs
                n = min(len(ids), max_k)
                left[i, :n] = logp[i, width - len(ids):width - len(ids) + n].double()
            out.append(left.cumsum(1))
        total = torch.cat(out).reshape(len(rollouts), len(candidates), max_k).permute(2, 0, 1)
        return (total - torch.logsumexp(total, dim=2, keepdim=True)).numpy()

    def _scoring_rows(self, rollouts: Rollouts, candidates) -> tuple[list, list]:
        return scoring_rows(self.sender.lm, self.system_for, rollouts,
                            [candidates] * len(rollouts))

    def log_posteriors_tensor(self, rollouts: Rollouts, batch_size: int = 64) -> torch.Tensor:
        """``[rows, candidates]`` log-posteriors as a tensor; under grad mode the gradient
        reaches the shared weights (the receiver's supervised update, see ``supervised_loss``)."""
        candidates = rollouts.episodes[0].candidates
        total = score_under(self.sender, self.system_for, rollouts,
                            [candidates] * len(rollouts), batch_size)
        return total - torch.logsumexp(total, dim=1, keepdim=True)


def scoring_rows(lm, system_for, rollouts: Rollouts, secrets: list) -> tuple[list, list]:
    """Every (row, secret) pair, ``secrets[row]`` listing the secrets to try for that row: the
    prompt as the sender would have seen it had that been the secret, and the row's response."""
    prompts, responses = [], []
    for row in range(len(rollouts)):
        ep = rollouts.episode_of(row)
        for secret in secrets[row]:
            system = with_condition(system_for(ep, secret), ep.condition)
            prompts.append(lm.prompt_ids([ep.prompt], system)[0])
            responses.append(rollouts.response_ids[row])
    return prompts, responses


def score_under(sender: Sender, system_for, rollouts: Rollouts, secrets: list,
                batch_size: int = 64) -> torch.Tensor:
    """``[rows, len(secrets[0])]``: each response's log-likelihood under the sender, had each
    of its row's ``secrets`` been the secret (one scoring pass per pair)."""
    prompts, responses = scoring_rows(sender.lm, system_for, rollouts, secrets)
    sender.model.eval()
    sums = []
    for start in range(0, len(prompts), batch_size):
        logp, _ = response_logprobs(sender.lm, prompts[start:start + batch_size],
                                    responses[start:start + batch_size])
        sums.append(logp.sum(-1))
    return torch.cat(sums).reshape(len(rollouts), len(secrets[0]))


class PseudoLikelihoodReceiver:
    """The likelihood receiver for many bits at the cost of few: each response is scored under
    the true secret and its k one-bit neighbours (k + 1 readings, not 2**k), which gives every
    bit's exact posterior *given the other bits* (the conditionals of Besag's 1975
    pseudo-likelihood); their product is the posterior it returns over all candidates.

    It reads the truth of the other bits, so it is ``privileged``: a reward and a teacher for
    the LM receiver (``receiver.teacher = "pseudo-likelihood"``), never the decoder an
    evaluation reports (``HandOver.decoder`` is then the student)."""

    name = "pseudo-likelihood"
    privileged = True

    def __init__(self, sender: Sender, system_for):
        self.sender, self.system_for = sender, system_for

    def observe(self, rollouts: Rollouts, log_posteriors=None) -> None:
        """Learns nothing of its own: it moves with the sender's weights."""

    @torch.no_grad()
    def log_posteriors(self, rollouts: Rollouts, batch_size: int = 64) -> np.ndarray:
        candidates = rollouts.episodes[0].candidates
        bits = np.array([[c == "1" for c in cand] for cand in candidates])  # [candidates, k]
        truths = [rollouts.episode_of(r).secret for r in range(len(rollouts))]
        flip = {"0": "1", "1": "0"}
        secrets = [[t] + [t[:i] + flip[t[i]] + t[i + 1:] for i in range(len(t))] for t in truths]
        scores = score_under(self.sender, self.system_for, rollouts, secrets,
                             batch_size).double().cpu().numpy()
        margin = scores[:, :1] - scores[:, 1:]  # [rows, k]: truth against each neighbour
        log_true = -np.logaddexp(0.0, -margin)  # log P(bit i = truth_i | response, other bits)
        log_other = -np.logaddexp(0.0, margin)
        truth_bits = np.array([[c == "1" for c in t] for t in truths])  # [rows, k]
        agree = bits[None, :, :] == truth_bits[:, None, :]  # [rows, candidates, k]
        return np.where(agree, log_true[:, None, :], log_other[:, None, :]).sum(-1)


def supervised_loss(log_posteriors: torch.Tensor, truth: np.ndarray) -> torch.Tensor:
    """Cross-entropy of the receiver's posterior on the true secrets. For the likelihood
    receiver it trains the sender's own weights to tell its responses apart by secret: the
    receiver's supervised step of Mathew et al. 2024 (there on a separate model), here a
    variational bound on the secret-response mutual information (Barber & Agakov 2003) whose
    gradient reaches the sender.

    With the likelihood receiver reading the sender's own temperature-1 samples, the receiver
    *is* the exact posterior, and this term's gradient has expectation zero: averaged over
    secrets and responses, both ``grad log pi(y | s)`` and the posterior-weighted
    ``grad log pi(y | s')`` vanish. It then only adds noise (measured: held-out accuracy 0.54 after
    30 steps with weight 1, against 0.65 without). It earns its keep where the receiver is not
    the sender's posterior: a paraphrased channel, or another sampling temperature."""
    rows = torch.arange(len(truth), device=log_posteriors.device)
    return -log_posteriors[rows, torch.as_tensor(truth, device=log_posteriors.device)].mean()


class BagOfWordsReceiver:
    name = "bow"

    def __init__(self, history: int = 512, seed: int = 0):
        self.texts: deque[str] = deque(maxlen=history)
        self.labels: deque[str] = deque(maxlen=history)
        self.seed = seed
        self.model_ = None

    def observe(self, rollouts: Rollouts, log_posteriors=None) -> None:
        """Add the batch to the history and refit (after scoring it: no peeking)."""
        for row, text in enumerate(rollouts.texts):
            self.texts.append(text)
            self.labels.append(rollouts.episode_of(row).secret)
        self._refit()

    def _refit(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        if len(set(self.labels)) > 1:
            self.model_ = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1),
                                        LogisticRegression(C=1.0, max_iter=1000,
                                                           random_state=self.seed))
            self.model_.fit(list(self.texts), list(self.labels))

    def log_posteriors(self, rollouts: Rollouts) -> np.ndarray:
        candidates = list(rollouts.episodes[0].candidates)
        if self.model_ is None:
            return np.full((len(rollouts), len(candidates)), -np.log(len(candidates)))
        proba = self.model_.predict_proba(rollouts.texts)
        out = np.full((len(rollouts), len(candidates)), -30.0)
        for j, cls in enumerate(self.model_.classes_):
            out[:, candidates.index(cls)] = np.log(np.clip(proba[:, j], 1e-13, None))
        return out - np.logaddexp.reduce(out, axis=1, keepdims=True)

    def state(self) -> dict:
        return {"texts": list(self.texts), "labels": list(self.labels)}

    def load_state(self, state: dict) -> None:
        self.texts.clear()
        self.labels.clear()
        self.texts.extend(state["texts"])
        self.labels.extend(state["labels"])
        self._refit()


def make_receiver(cfg, sender: Sender, task, *, seed: int = 0):
    """The receiver a ``ReceiverConfig`` names, reading ``sender``'s responses to ``task``."""
    kind = cfg.kind
    if kind not in ("likelihood", "bow", "lm"):
        raise ValueError(f"receiver.kind {kind!r}: choose likelihood, bow or lm")
    if task.name == "collusion" and (kind == "likelihood" or cfg.teacher == "pseudo-likelihood"):
        raise ValueError("with the collusion task the likelihood receiver reads the CV, which a "
                         "receiver may not: use receiver.kind = \"lm\" with receiver.teacher = "
                         "\"likelihood\" (a teacher only), \"lm\" alone or \"bow\"")
    if cfg.teacher == "pseudo-likelihood" and not set("".join(task.candidates)) <= {"0", "1"}:
        raise ValueError("receiver.teacher = \"pseudo-likelihood\" flips bits of a payload: "
                         f"this task's secrets are {task.candidates[:4]}; use \"likelihood\"")
    uses_likelihood = kind == "likelihood" or cfg.teacher == "likelihood"
    if uses_likelihood and len(task.candidates) > cfg.max_candidates:
        raise ValueError(
            f"the likelihood receiver would score each response under {len(task.candidates)} "
            f"candidate secrets (receiver.max_candidates = {cfg.max_candidates}): use "
            "receiver.teacher = \"pseudo-likelihood\" (k + 1 readings for k bits), "
            "receiver.kind = \"lm\" with no teacher, or raise receiver.max_candidates if the "
            "machine can afford it")
    if cfg.teacher and kind != "lm":
        raise ValueError(f"receiver.teacher is the cold start of the LM receiver; with "
                         f"receiver.kind = {kind!r} leave it empty")
    if kind == "likelihood":
        return LikelihoodReceiver(sender, task.system_for)
    if kind == "bow":
        return BagOfWordsReceiver(cfg.history, seed)
    from ..lm import load_lm
    from .handover import HandOver, check_handover
    from .lm_receiver import LMReceiver

    if cfg.teacher:
        check_handover(cfg.handover, cfg.handover_accuracy)
    shared = not cfg.model
    lm = sender.lm if shared else load_lm(cfg.model, device=sender.lm.device)
    student = LMReceiver(lm, task.candidates, shared=shared, head=cfg.head, rank=cfg.lora_rank,
                         alpha=cfg.lora_alpha, targets=cfg.lora_targets, lr=cfg.lr,
                         updates_per_step=cfg.updates_per_step, batch_size=cfg.batch_size,
                         history=cfg.history, pooling=cfg.pooling, seed=seed)
    if not cfg.teacher:
        return student
    if cfg.teacher == "pseudo-likelihood":
        teacher = PseudoLikelihoodReceiver(sender, task.system_for)
    else:  # the collusion task's counterfactual CVs hold what the receiver may not see
        teacher = LikelihoodReceiver(sender, task.system_for, privileged=task.name == "collusion")
    return HandOver(teacher, student,
                    handover=cfg.handover, handover_accuracy=cfg.handover_accuracy)
