"""Reference codecs (issue 3, in progress): framing, the Discop kernel, and decode safety."""

import random

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from latentcode.codecs import make_codec
from latentcode.codecs.base import CodecError, RowState, token_table
from latentcode.codecs.discop import Discop, _Tree
from latentcode.codecs.framing import ChannelBits, FrameReader, frame_bits
from latentcode.payload import KeyedStream, random_payloads

KEY = b"k" * 32


def test_frame_round_trip_and_crc():
    payload = "1011001110001111"
    channel = ChannelBits(frame_bits(payload), KEY, "id-1")
    bits = channel.take(0, len(frame_bits(payload)))
    assert FrameReader(KEY, "id-1").read(bits) == (True, payload, payload)
    complete, verified, _ = FrameReader(b"other key", "id-1").read(bits)
    assert verified is None
    flipped = bits[:20] + [1 - bits[20]] + bits[21:]
    assert FrameReader(KEY, "id-1").read(flipped)[1] is None
    assert FrameReader(KEY, "id-1").read(bits[:30]) == (False, None, payload[:14])


def test_channel_bits_look_uniform_even_for_constant_payloads():
    bits = ChannelBits(frame_bits("0" * 2000), KEY, "n").take(0, 2000)
    assert 900 < sum(bits) < 1100


def _discop_draw(p, seed):
    st = RowState(KEY, f"draw-{seed}", channel=ChannelBits(frame_bits("1" * 64), KEY, str(seed)),
                  frame_len=112)
    rnd = random.Random(seed)
    st.channel._bits = [rnd.getrandbits(1) for _ in range(200)]  # arbitrary message bits
    return Discop().encode_step(p, st, table=None), st


def test_discop_tokens_follow_the_model_distribution_exactly():
    """Zero KL: for arbitrary message bits the token frequencies match p (chi-square)."""
    p = np.array([0.42, 0.2, 0.13, 0.1, 0.06, 0.05, 0.02, 0.015, 0.005, 0.0])
    draws = [_discop_draw(p, seed)[0] for seed in range(6000)]
    counts = np.bincount(draws, minlength=len(p))
    assert counts[-1] == 0
    observed, expected = counts[:-1], p[:-1] * len(draws)
    assert chisquare(observed, expected).pvalue > 1e-3


def test_discop_embeds_bits_and_the_path_gives_them_back():
    p = np.random.default_rng(0).dirichlet(np.ones(64) * 0.3)
    total = 0
    for seed in range(200):
        token, st = _discop_draw(p, seed)
        tree = _Tree(p, KeyedStream(KEY, f"draw-{seed}/discop/0"))
        assert tree.path_bits(token) == st.channel._bits[:st.sent]
        total += st.sent
    entropy = -(p[p > 0] * np.log2(p[p > 0])).sum()
    assert 0.6 * entropy < total / 200 <= entropy + 1e-9


def test_codecs_refuse_float32_models(tiny):
    with pytest.raises(CodecError, match="float64"):
        make_codec("discop").encode(tiny, ["hi"], ["01"], KEY)


def test_token_table_is_byte_exact(tiny):
    table = token_table(tiny)
    text = "Naïve café — “quotes” and emoji 🙂 in one line."
    ids = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert b"".join(table.bytes[i] for i in ids).decode("utf-8") == text
    assert table.special[tiny.tokenizer.convert_tokens_to_ids("<|im_end|>")]


@pytest.mark.embedded
def test_discop_decode_never_returns_wrong_bits(embedded):
    lm = embedded
    lm.model.double()
    try:
        codec = make_codec("discop")
        payloads = random_payloads(3, 24, seed=5)
        prompts = ["Describe a rainy afternoon.", "Review a pair of running shoes.",
                   "Write a note to a neighbour about a lost cat."]
        transcripts = codec.encode(lm, prompts, payloads, KEY, max_new_tokens=80, batch_size=3)
        for t, payload in zip(transcripts, payloads):
            assert t.meta["complete"] and t.meta["bits_embedded"] == 24 + 48
            assert t.meta["kl_nats"] == 0.0 and t.meta["entropy_bits"] > 24 + 48
            result = codec.decode(lm, t, KEY)
            # ok means CRC-verified bits; anything else must say so and return no bits
            assert (result.status == "ok") == (result.bits is not None)
            assert result.bits in (None, payload)
            wrong = codec.decode(lm, t, b"another key")
            assert wrong.status != "ok" and wrong.bits is None
        short = transcripts[0]
        short.text = short.text[:12]
        assert codec.decode(lm, short, KEY).status in ("partial", "failed")
    finally:
        lm.model.float()
