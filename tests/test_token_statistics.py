"""The statistics without blind spots: the rank ladder to the vocabulary, both directions of a
shift, the PIT's dispersion, and statistics restricted to classes of positions. Each is tried on
text made to have the property it detects, and on text that lacks it."""

from itertools import pairwise

import numpy as np
import torch

from detectors.distribution import EVERY_FEATURE, STATISTICS, features
from detectors.token_stats import CLASSES, TAIL_KS, TokenStats, position_classes, token_stats
from latentcode.codecs import make_codec
from latentcode.prompts import Prompt
from latentcode.sampling import sample_clean

PROMPTS = [Prompt(f"p{i}", f"Write about topic number {i}.") for i in range(30)]


def synthetic(ranks: np.ndarray, vocab: int = 100, classes: np.ndarray | None = None) -> TokenStats:
    """Token statistics of a text under a model that is uniform over ``vocab`` tokens at every
    position, the tokens seen having the given ranks: every expectation is known exactly."""
    n = len(ranks)
    p = np.full(vocab, 1 / vocab)
    cum = np.cumsum(p)
    centred = cum - p / 2 - 0.5
    tail = np.array([max(0.0, 1 - min(k, vocab) / vocab) for k in TAIL_KS])
    return TokenStats(
        logp=np.full(n, -np.log(vocab)), rank=np.asarray(ranks), mean=np.full(n, -np.log(vocab)),
        var=np.zeros(n), mass_above=(np.asarray(ranks) - 1) / vocab,
        tail_mass=np.tile(tail, (n, 1)), pit_m2=np.full(n, (p * centred ** 2).sum()),
        pit_m4=np.full(n, (p * centred ** 4).sum()),
        classes=np.zeros(n, dtype=np.uint8) if classes is None else classes, truncated=False)


def test_every_statistic_is_a_feature_and_the_ladder_reaches_past_the_vocabulary():
    rng = np.random.default_rng(0)
    f = features(synthetic(rng.integers(1, 101, 200)))
    assert list(f) == EVERY_FEATURE
    assert max(TAIL_KS) >= 131072 and all(b == 2 * a for a, b in pairwise(TAIL_KS))
    assert set(STATISTICS["tail"]) >= {"pit", "pit_dispersion"}


def test_pit_dispersion_sees_tokens_from_both_ends_and_from_the_middle_only():
    rng = np.random.default_rng(1)
    honest = [features(synthetic(rng.integers(1, 101, 300)))["pit_dispersion"] for _ in range(50)]
    ends = features(synthetic(rng.choice([1, 2, 99, 100], 300)))["pit_dispersion"]
    middle = features(synthetic(rng.integers(45, 56, 300)))["pit_dispersion"]
    assert abs(np.mean(honest)) < 0.5 and 0.6 < np.std(honest) < 1.5  # about N(0, 1)
    assert ends > 10 and middle < -10
    # neither shifts the mean PIT: only the dispersion sees them
    assert abs(features(synthetic(rng.choice([1, 100], 300)))["pit"]) < 6


def test_the_pit_and_the_ladder_are_signed_a_head_shift_reads_opposite_to_a_tail_shift():
    rng = np.random.default_rng(2)
    head = features(synthetic(rng.integers(1, 40, 300)))
    tail = features(synthetic(rng.integers(60, 101, 300)))
    assert head["pit"] < -5 < 5 < tail["pit"]
    assert head["tail_64"] < -5 < 5 < tail["tail_32"]


def test_statistics_by_position_class_see_a_code_confined_to_word_starts():
    rng = np.random.default_rng(3)
    n = 400
    classes = np.where(rng.random(n) < 0.2, CLASSES["word"], 0).astype(np.uint8)
    ranks = rng.integers(1, 101, n)
    word = (classes & CLASSES["word"]) > 0
    ranks[word] = rng.integers(1, 21, word.sum())  # the head only, at word starts only
    f = features(synthetic(ranks, classes=classes))
    assert f["pit@word"] < -8
    assert f["pit@sentence"] == 0 and f["pit@word"] < 1.5 * f["pit"]  # diluted in the whole
    honest = features(synthetic(rng.integers(1, 101, n), classes=classes))
    assert abs(honest["pit@word"]) < 3.5


def test_position_classes_are_read_off_the_characters():
    text = "Hello there, friend. Next line\nand more!"
    spans = [(0, 5), (5, 11), (11, 12), (12, 19), (19, 20), (20, 25), (25, 30), (30, 31),
             (31, 34), (34, 39), (39, 40)]
    c = position_classes(text, spans)
    word, sent, punct, nl = (CLASSES[k] for k in ("word", "sentence", "punct", "newline"))
    assert c[0] & word and c[0] & sent  # "Hello" opens the text
    assert c[1] & word and not c[1] & sent  # " there"
    assert c[2] & punct and not c[2] & word  # ","
    assert c[5] & sent  # " Next" after "."
    assert c[7] & nl and not c[7] & word  # "\n"
    assert c[8] & sent  # "and" after a line break
    assert c[10] & punct


def test_the_ladder_finds_truncation_deep_in_the_vocabulary(tiny):
    """Arithmetic coding of the top 256 tokens (of 49k, on a near-uniform model) leaves the
    rungs at and past 256 in deficit and the shallow rungs all but untouched, where a ladder
    cut at 64 would see little."""
    tiny.model.double()
    try:
        cut = make_codec("arithmetic", top_k=256).encode(
            tiny, [p.prompt for p in PROMPTS], ["1" * 400] * len(PROMPTS), b"k",
            max_new_tokens=24, batch_size=15)
    finally:
        tiny.model.float()
    honest = sample_clean(tiny, PROMPTS, 30, max_new_tokens=24, seed=5, progress=False)

    def rung(ts, k):
        return np.array([features(s)[f"tail_{k}"] for s in token_stats(tiny, ts)])

    deficit = {k: rung(honest, k).mean() - rung(cut, k).mean() for k in (4, 256, 1024)}
    assert deficit[256] > 3 and deficit[1024] > 3
    assert deficit[4] < deficit[256] / 3, deficit  # the shallow rungs barely move


def test_token_stats_pit_moments_match_a_direct_computation(tiny):
    from latentcode.transcripts import Transcript

    t = Transcript(id="m", prompt="Hi", text="Hello there, friend.")
    st = token_stats(tiny, [t])[0]
    prompt = tiny.prompt_ids([t.prompt])[0]
    ids = tiny.tokenizer(t.text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = tiny.model(input_ids=torch.tensor([prompt + ids])).logits[0].double()
    p = torch.softmax(logits[len(prompt) - 1:-1], -1).numpy()
    ordered = -np.sort(-p, axis=1)
    u = np.cumsum(ordered, axis=1) - ordered / 2 - 0.5
    np.testing.assert_allclose(st.pit_m2, (ordered * u ** 2).sum(1), atol=1e-5)
    np.testing.assert_allclose(st.pit_m4, (ordered * u ** 4).sum(1), atol=1e-5)
    assert st.classes.dtype == np.uint8 and st.classes[0] & CLASSES["word"]


def test_a_colder_sample_reads_as_a_head_shift(tiny):
    cold = sample_clean(tiny, PROMPTS, 30, max_new_tokens=24, seed=6, temperature=0.6,
                        progress=False)
    honest = sample_clean(tiny, PROMPTS, 30, max_new_tokens=24, seed=7, progress=False)

    def stat(ts, name):
        return np.array([features(s)[name] for s in token_stats(tiny, ts)])

    assert stat(cold, "pit").mean() < stat(honest, "pit").mean() - 3
    assert stat(cold, "fast_detectgpt").mean() > stat(honest, "fast_detectgpt").mean() + 3


def test_the_tail_detector_keeps_the_rungs_honest_text_can_fall_below():
    """On 10-token texts of a model uniform over 100 tokens, a token below the top k is
    expected 10 * (1 - k/100) times: at least once for k <= 90, never for k >= 100. The fitted
    detector keeps exactly the rungs with an expected count of at least one."""
    from detectors.distribution import DistributionDetector

    rng = np.random.default_rng(4)
    stats = [synthetic(rng.integers(1, 101, 10)) for _ in range(5)]
    det = DistributionDetector(statistic="tail")
    kept = det._rungs_that_can_show(stats, STATISTICS["tail"])
    assert [n for n in kept if n.startswith("tail_")] == [f"tail_{k}" for k in (1, 2, 4, 8, 16, 32, 64)]
    assert kept[-2:] == ["pit", "pit_dispersion"]
    strict = DistributionDetector(statistic="tail", min_expected=100.0)
    assert [n for n in strict._rungs_that_can_show(stats, STATISTICS["tail"])
            if n.startswith("tail_")] == ["tail_1"]  # the rung that expects most, at least
