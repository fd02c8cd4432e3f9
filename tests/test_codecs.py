"""Reference codecs: framing, kernels, decode safety, and round trips on the embedded model."""

import dataclasses
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from latentcode.codecs import CODECS, make_codec
from latentcode.codecs.base import CodecError, RowState, token_table
from latentcode.codecs.discop import Discop, _Tree
from latentcode.codecs.distributions import most_likely_first
from latentcode.codecs.framing import ChannelBits, FrameReader, frame_bits
from latentcode.payload import KeyedStream, random_payloads

KEY = b"k" * 32


def test_frame_round_trip_and_crc():
    payload = "1011001110001111"
    channel = ChannelBits(frame_bits(payload), KEY, "id-1")
    bits = channel.take(0, len(frame_bits(payload)))
    assert FrameReader(KEY, "id-1").read(bits) == (True, payload, payload)
    assert FrameReader(b"other key", "id-1").read(bits)[1] is None
    flipped = bits[:20] + [1 - bits[20]] + bits[21:]
    assert FrameReader(KEY, "id-1").read(flipped)[1] is None
    assert FrameReader(KEY, "id-1").read(bits[:30]) == (False, None, payload[:6])
    assert FrameReader.needed(FrameReader(KEY, "id-1").unmask(bits[:24])) == len(bits)
    bad_header = bits[:23] + [1 - bits[23]]
    assert FrameReader.needed(FrameReader(KEY, "id-1").unmask(bad_header)) == 0


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


def _sender_state(seed, bits=None):
    st = RowState(KEY, f"s-{seed}", channel=ChannelBits(frame_bits("1" * 8), KEY, str(seed)),
                  frame_len=56)
    rnd = random.Random(seed)
    st.channel._bits = bits or [rnd.getrandbits(1) for _ in range(400)]
    return st


@pytest.mark.parametrize("name", ["huffman", "arithmetic"])
def test_kernel_round_trip_through_the_receiver(name, tiny):
    """encode_step then decode_step on the same distributions gives back the channel bits."""
    codec, table = make_codec(name), token_table(tiny)
    rng = np.random.default_rng(1)
    sender = _sender_state(0)
    receiver = RowState(KEY, "s-0", receiving=True)
    received: list[int] = []
    for step in range(40):
        p = np.zeros(len(table.bytes))
        support = rng.choice(np.flatnonzero(~table.special), size=50, replace=False)
        p[support] = rng.dirichlet(np.ones(50) * 0.5)
        token = codec.encode_step(p, sender, table)
        text = table.bytes[token]
        options = [o for o in codec.decode_step(p, receiver, table, text, 0) if o[0] == token]
        assert len(options) == 1
        _, bits, extra = options[0]
        received += bits
        receiver = RowState(KEY, "s-0", receiving=True, step=step + 1, extra=extra)
    assert len(received) <= sender.sent + 1 and sender.sent > 40
    assert received[: sender.sent - 2] == sender.channel._bits[: sender.sent - 2]
    if name == "huffman":
        assert received == sender.channel._bits[: sender.sent]


def test_huffman_is_not_zero_kl():
    p = np.array([0.6, 0.25, 0.1, 0.05])
    st = _sender_state(3)
    make_codec("huffman", k=4).encode_step(p, st, table=None)
    assert st.kl > 0.01  # codes of length 1, 2, 3, 3 send 0.5/0.25/0.125/0.125


ROUND_TRIP_IDS = [f"rt-{i:02d}" for i in range(24)]


@pytest.fixture(scope="module")
def round_trip_transcripts(embedded64):
    """Each codec's 24 transcripts, encoded once and under the same ids for every codec, so
    that one codec's text is another's foreign text with the very nonce its receiver expects.
    72 tokens: the longest frame (meteor's) ends by token 60, and every test asserts that its
    frame is complete; the receiver stops at the CRC, so the tail after it is never read."""
    from latentcode.prompts import read_prompts

    prompts = [p.prompt for p in read_prompts()[::40]][:8] * 3
    payloads = random_payloads(len(prompts), 24, seed=5)
    cache = {}

    def encoded(name):
        if name not in cache:
            cache[name] = make_codec(name).encode(embedded64, prompts, payloads, KEY,
                                                  ids=ROUND_TRIP_IDS, max_new_tokens=72,
                                                  batch_size=24)
        return cache[name], payloads

    return encoded


@pytest.mark.embedded
@pytest.mark.parametrize("name", sorted(CODECS))
def test_round_trip_and_bad_input_on_the_embedded_model(embedded64, round_trip_transcripts, name):
    """A few dozen payloads through the text; wrong key, another codec's text, truncated text."""
    lm = embedded64
    codec = make_codec(name)
    transcripts, payloads = round_trip_transcripts(name)
    for t, payload in zip(transcripts, payloads):
        assert t.meta["complete"] and t.meta["bits_embedded"] == 24 + 56
        assert (t.meta["kl_nats"] == 0.0) == (name == "discop")
        if name == "sparsamp":  # the 2**-32 rounding both sides share
            assert t.meta["kl_nats"] < 1e-5 * t.meta["embedding_tokens"]
        result = codec.decode(lm, t, KEY)
        assert result.status == "ok" and result.bits == payload, result.message
    victim = transcripts[0]
    wrong = codec.decode(lm, victim, b"another key")
    assert wrong.status == "failed" and wrong.bits is None
    names = sorted(CODECS)
    other = names[(names.index(name) + 1) % len(names)]
    foreign = round_trip_transcripts(other)[0][0]
    assert foreign.id == victim.id and foreign.text != victim.text
    assert codec.decode(lm, foreign, KEY).bits is None
    short = dataclasses.replace(victim, text=victim.text[:10])
    cut = codec.decode(lm, short, KEY)
    assert cut.status in ("partial", "failed") and cut.bits is None


@pytest.mark.embedded
def test_encode_and_decode_commands(tmp_path, capsys):
    from latentcode.cli import main

    key, other = tmp_path / "k", tmp_path / "other"
    key.write_bytes(b"shared secret")
    other.write_bytes(b"not the key")
    out = tmp_path / "stego.jsonl"
    common = ["--codec", "huffman", "--n", "2", "--payload-bits", "8", "--quiet"]
    assert main(["encode", *common, "--key-file", str(key), "--out", str(out),
                 "--max-new-tokens", "48"]) == 0
    assert main(["decode", "--key-file", str(key), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ok 2; mean bit accuracy 1.000" in printed
    assert main(["decode", "--key-file", str(other), str(out)]) == 0
    assert "ok" not in capsys.readouterr().out.split("transcripts:")[1]
    too_long = tmp_path / "too_long.jsonl"
    assert main(["encode", *common[:4], "--payload-bits", "2000", "--key-file", str(key),
                 "--out", str(too_long), "--max-new-tokens", "6", "--quiet"]) == 2
    assert "ended before their payload" in capsys.readouterr().err and not too_long.exists()


def test_keep_float64_turns_only_float64_to_float32_casts_into_no_ops():
    import torch

    from latentcode.codecs.numerics import KeepFloat64

    x64, x32 = torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float16)
    with KeepFloat64():
        assert x64.to(torch.float32).dtype == torch.float64
        assert x64.to(dtype=torch.float32).dtype == torch.float64
        assert x64.float().dtype == torch.float64
        assert torch.softmax(x64, -1, dtype=torch.float32).dtype == torch.float64
        assert x32.float().dtype == torch.float32  # other casts untouched
        assert x64.to(torch.float16).dtype == torch.float16
    assert x64.float().dtype == torch.float32  # and only inside


@pytest.mark.embedded
def test_padded_batch_and_single_row_logits_agree_inside_exact_forward(embedded64):
    """SmolLM2's RMSNorm casts to float32: outside exact_forward a padded row and the same row
    alone differ by ~1e-5 in float64 logits on this prompt, inside by ~1e-12."""
    import torch

    from latentcode.codecs.numerics import exact_forward
    from latentcode.generation import left_pad
    from latentcode.prompts import read_prompts

    lm = embedded64
    prompts = [p.prompt for p in read_prompts()[1::8]]
    ids = lm.prompt_ids([prompts[21], prompts[21] + " Please answer in detail, step by step."])
    assert len(ids[1]) > len(ids[0])
    x, mask = left_pad(ids, lm.tokenizer.pad_token_id, "cpu")
    with exact_forward(), torch.inference_mode():
        batched = lm.model(input_ids=x, attention_mask=mask,
                           position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits[0, -1]
        alone = lm.model(input_ids=torch.tensor(ids[:1])).logits[0, -1]
    assert (batched - alone).abs().max().item() < 1e-9


@pytest.mark.embedded
def test_sparsamp_reading_near_the_end_of_a_long_block_is_not_pruned(embedded64):
    """Regression: a 96-bit block ends with the text; its bits count only when it is decoded,
    so the receiver must count what the unfinished block already pins down before it judges
    that the frame cannot fit in the remaining text (here the tokenizer's reading is wrong at
    ``'s`` and the search has to come back to this prompt's end)."""
    from latentcode.prompts import read_prompts

    lm = embedded64
    codec = make_codec("sparsamp")
    prompt = [p.prompt for p in read_prompts()[1::8]][21]
    payload = random_payloads(40, 64, seed=9)[21]
    t = codec.encode(lm, [prompt], [payload], b"k2", max_new_tokens=200,
                     ids=["sparsamp-00021"])[0]
    assert t.meta["complete"]
    result = codec.decode(lm, t, b"k2")
    assert result.status == "ok" and result.bits == payload, result.message


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.sampled_from([0.0, 1e-300, 0.1, 0.25, 0.5, 1.0]) | st.floats(0, 1),
                       min_size=1, max_size=60),
       k=st.integers(0, 70))
def test_most_likely_first_is_the_stable_sort_it_replaces(values, k):
    """The codecs' layouts rest on this order (ties included), so it must equal the plain
    stable argsort exactly, with or without a top k."""
    p = np.array(values)
    tokens = np.flatnonzero(p > 0) if k % 2 else np.arange(len(p))
    reference = tokens[np.argsort(-p[tokens], kind="stable")]
    got = most_likely_first(p, tokens, k)
    assert got.tolist() == (reference[:k] if k else reference).tolist()


@pytest.mark.parametrize("tree_mask", [True, False])
def test_speculator_scores_lookahead_tokens_like_plain_forward_passes(tree_mask, monkeypatch):
    """The receiver's lookahead scores alternative tokens beside its stored guess (one call
    under a tree mask; one call per token where the attention kernel takes no custom mask):
    the logits must equal a plain forward over prompt + path + token, and the guess (and,
    under the tree mask, the cache) must be left as they were."""
    import torch

    from latentcode.codecs import search
    from latentcode.lm import tiny_lm

    if not tree_mask:
        monkeypatch.setattr(search, "TREE_MASKS", ())
    lm = tiny_lm(seed=3)
    lm.model.double()
    text = b"Rivers carve valleys, carry silt and feed the deltas at the sea."
    prompt = lm.prompt_ids(["Tell me about rivers."])[0]
    spec = search._Speculator(lm, prompt, token_table(lm), text)
    with torch.inference_mode():
        guess = lm.tokenizer(text.decode(), add_special_tokens=False)["input_ids"]
        spec.logits(guess[:1])  # speculates a chunk of the tokenizer's reading
        stored_rows, cached = spec.rows.clone(), list(spec.cached)
        length = spec.cache.get_seq_length()
        path = guess[:4]
        tokens = [guess[4], 17, 4000, 17]  # the guessed token, two others, a repeat
        got = spec.next_logits(path, tokens)
        assert sorted(got) == sorted(set(tokens))
        for t in set(tokens):
            plain = lm.model(input_ids=torch.tensor([prompt + path + [t]])).logits[0, -1]
            assert (got[t] - plain).abs().max().item() < 1e-9, t
        if tree_mask:
            assert spec.cache.get_seq_length() == length and spec.cached == cached
        assert torch.equal(spec.rows, stored_rows)
        assert torch.equal(spec.logits(path), stored_rows[len(path) - spec.base])
