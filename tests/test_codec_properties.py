"""Property and statistical tests of every codec on the tiny random model, through the text.

decode(encode(bits)) == bits for random payloads, prompts and keys (hypothesis); zero-KL codecs
sample exactly like the model, huffman does not (chi-square on many first tokens).
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from latentcode.codecs import CODECS, CodecError, NullCodec, make_codec
from latentcode.codecs.base import RowState, token_table
from latentcode.codecs.framing import ChannelBits, frame_bits
from latentcode.lm import tiny_lm


@pytest.fixture(scope="module")
def tiny64():
    lm = tiny_lm(seed=1)
    lm.model.double()
    return lm


prompts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                  min_size=1, max_size=30)
ROUNDS, BATCH = 25, 8  # 200 payloads, prompts and keys per codec


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=1, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_decode_of_encode_gives_the_payload_back_through_the_text(name, tiny64, data):
    """Hundreds of random payloads, prompts and keys; decoding reads only the text.

    The tiny model is random, so its text is full of odd token splits (the hardest case for a
    receiver); a decode may give up there, but it must say so, and never return wrong bits.
    """
    codec = make_codec(name)
    ok, failures = 0, []
    for _ in range(ROUNDS):
        payloads = data.draw(st.lists(st.text("01", min_size=1, max_size=40),
                                      min_size=BATCH, max_size=BATCH))
        prompt_texts = data.draw(st.lists(prompts, min_size=BATCH, max_size=BATCH))
        key = data.draw(st.binary(min_size=1, max_size=32))
        transcripts = codec.encode(tiny64, prompt_texts, payloads, key, max_new_tokens=48,
                                   batch_size=BATCH)
        for t, payload in zip(transcripts, payloads):
            assert t.meta["complete"], "48 tokens of the tiny model carry any 40-bit payload"
            result = codec.decode(tiny64, t, key, max_forward_tokens=2000)
            assert result.bits in (None, payload), f"wrong bits for {t.text!r}"
            assert (result.status == "ok") == (result.bits is not None)
            ok += result.bits == payload
            if result.bits is None:
                failures.append((payload, t.text[:60], result.message))
    assert ok >= 0.95 * ROUNDS * BATCH, failures


def _model_probs(lm, codec, prompt):
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor(lm.prompt_ids([prompt]))).logits[0, -1]
    state = RowState(b"key", "x", channel=[0], frame_len=1)
    return codec._probs(logits, state, token_table(lm), lm.stop_ids)


@pytest.mark.parametrize("name,zero_kl", [("discop", True), ("sparsamp", True), ("null", True),
                                          ("huffman", False)])
def test_zero_kl_codecs_sample_like_the_model_and_huffman_does_not(name, zero_kl, tiny64):
    """Chi-square of the tokens the sender picks from the tiny model's next-token distribution,
    over 4000 independent encodings (own nonce, hence own keyed randomness and masked bits), against the model's p.

    Top-p 0.9 keeps the support small enough for most cells to be expected 5+ times.
    """
    codec = NullCodec(top_p=0.9) if name == "null" else make_codec(name, top_p=0.9)
    table = token_table(tiny64)
    p = _model_probs(tiny64, codec, "Write one sentence about the sea.")
    counts = np.zeros(len(p), dtype=np.int64)
    for i in range(4000):
        nonce = f"draw-{i}"
        state = RowState(b"key", nonce, channel=ChannelBits(frame_bits("1" * 200), b"key", nonce),
                         frame_len=256)
        counts[codec.encode_step(p, state, table)] += 1
    support = np.flatnonzero(p > 0)
    assert len(support) > 5 and counts.sum() == counts[support].sum()
    expected = p[support] * counts.sum()
    big = expected >= 5
    observed = np.append(counts[support][big], counts[support][~big].sum())
    expected = np.append(expected[big], expected[~big].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    pvalue = chisquare(observed, expected).pvalue
    if zero_kl:
        assert pvalue > 1e-4
    else:
        assert pvalue < 1e-6


def test_null_codec_is_a_clean_control_from_the_same_pipeline(tiny64):
    """Label 0, no payload, no bits, never stops early (as a sender with a long payload), and
    nothing to decode; the same key and id give the same text (keyed randomness)."""
    codec = NullCodec()
    runs = [codec.encode(tiny64, ["Tell me about rivers.", "Hi"], ["0" * 500] * 2, b"key",
                         max_new_tokens=12, batch_size=2) for _ in range(2)]
    assert [t.text for t in runs[0]] == [t.text for t in runs[1]]
    for t in runs[0]:
        assert t.label == 0 and t.payload is None and t.source == "null"
        assert t.meta["bits_embedded"] == 0 and t.meta["n_tokens"] == 12
        assert t.meta["entropy_bits"] > 0 and t.meta["kl_nats"] == 0
    with pytest.raises(CodecError, match="nothing to decode"):
        codec.decode(tiny64, runs[0][0], b"key")


@pytest.mark.parametrize("name", ["arithmetic", "sparsamp"])
def test_codecs_work_when_the_embedding_is_padded_past_the_tokenizer(name):
    """Many released models have more logits than tokens; the extra rows get no mass."""
    lm = tiny_lm(seed=2, extra_vocab=40)
    lm.model.double()
    codec = make_codec(name)
    payloads = ["1011", "0001110", "1"]
    transcripts = codec.encode(lm, ["a", "bb", "ccc"], payloads, b"key", max_new_tokens=40,
                               batch_size=3)
    for t, payload in zip(transcripts, payloads):
        assert codec.decode(lm, t, b"key").bits == payload
