"""Shared-prompt forward passes give what one plain forward per row gives, gradients included."""

import torch

from latentcode.channel.sender import Sender, response_logprobs
from latentcode.generation import distinct
from latentcode.prefix import common_prefix_length, continuation_logits

PROMPTS = [[5, 6, 7, 8], [5, 6, 7, 8], [9, 10], [5, 6, 7, 8], [11, 12, 13]]
CONTS = [[20, 21, 22], [23], [24, 25, 26, 27], [], [28, 29]]


def plain(lm, prompt, cont):
    logits = lm.model(input_ids=torch.tensor([prompt + cont])).logits[0]
    return logits[len(prompt) - 1:len(prompt) - 1 + len(cont)]


def test_distinct_keeps_first_seen_order():
    unique, index = distinct(PROMPTS)
    assert unique == [[5, 6, 7, 8], [9, 10], [11, 12, 13]] and index == [0, 0, 1, 0, 2]


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[1, 2], [1, 2]]) == 2 and common_prefix_length([[3], [4]]) == 0
    assert common_prefix_length([]) == 0


def test_continuation_logits_match_one_plain_forward_per_row(tiny):
    with torch.no_grad():
        logits, mask = continuation_logits(tiny, PROMPTS, CONTS)
        width = max(len(c) for c in CONTS)
        assert logits.shape[:2] == mask.shape == (len(CONTS), width)
        for r, (p, c) in enumerate(zip(PROMPTS, CONTS)):
            assert mask[r].tolist() == [False] * (width - len(c)) + [True] * len(c)
            if c:
                torch.testing.assert_close(logits[r, width - len(c):], plain(tiny, p, c),
                                           atol=1e-4, rtol=1e-4)


def test_last_only_gives_the_prediction_after_each_whole_row(tiny):
    with torch.no_grad():
        last, none = continuation_logits(tiny, PROMPTS, CONTS, last_only=True)
        assert none is None and last.shape[0] == len(CONTS)
        for r, (p, c) in enumerate(zip(PROMPTS, CONTS)):
            whole = tiny.model(input_ids=torch.tensor([p + c])).logits[0, -1]
            torch.testing.assert_close(last[r], whole, atol=1e-4, rtol=1e-4)
        short, _ = continuation_logits(tiny, [[5, 6], [7]], [[], []], last_only=True)
        torch.testing.assert_close(short[1], tiny.model(input_ids=torch.tensor([[7]])).logits[0, -1],
                                   atol=1e-4, rtol=1e-4)


def test_response_logprobs_and_their_gradients_match_the_plain_computation():
    from latentcode.lm import tiny_lm

    sender = Sender(tiny_lm(seed=3), rank=4, alpha=8)
    with torch.no_grad():  # a non-zero adapter, so the LoRA path matters
        for p in sender.trainable_parameters():
            p.normal_(0, 0.05)
    logp, keep = response_logprobs(sender.lm, PROMPTS, CONTS)
    logp.sum().backward()
    shared = [p.grad.clone() for p in sender.trainable_parameters()]
    sender.model.zero_grad()
    total = 0
    for i, (p, c) in enumerate(zip(PROMPTS, CONTS)):
        if not c:
            assert not keep[i].any()
            continue
        lp = torch.log_softmax(plain(sender.lm, p, c).float(), -1)[torch.arange(len(c)), c]
        torch.testing.assert_close(logp[i, -len(c):], lp, atol=1e-4, rtol=1e-4)
        assert keep[i, -len(c):].all() and not keep[i, :-len(c)].any()
        total = total + lp.sum()
    total.backward()
    for a, b in zip(shared, [p.grad for p in sender.trainable_parameters()]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    with torch.no_grad():  # the reference (adapter off) differs from the trained policy
        ref, _ = response_logprobs(sender.lm, PROMPTS, CONTS, reference=True, sender=sender)
    assert not torch.allclose(ref, logp.detach(), atol=1e-3)
