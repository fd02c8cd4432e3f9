"""The statistics without blind spots: the rank ladder to the vocabulary, both directions of a
shift, the PIT's dispersion, and statistics restricted to classes of positions. Each is tried on
text made to have the property it detects, and on text that lacks it."""

from itertools import pairwise

import numpy as np
import pytest
import torch

from detectors import make_detector
from detectors.distribution import EVERY_FEATURE, LADDER, STATISTICS, features, truncation_evidence
from detectors.token_stats import (
    CLASSES,
    NUCLEUS_PS,
    TAIL_KS,
    TokenStats,
    position_classes,
    token_stats,
)
from latentcode.codecs import make_codec
from latentcode.prompts import Prompt
from latentcode.sampling import sample_clean


def _auroc(clean, other) -> float:
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(np.r_[np.zeros(len(clean)), np.ones(len(other))], np.r_[clean, other])


PROMPTS = [Prompt(f"p{i}", f"Write about topic number {i}.") for i in range(30)]


def from_distributions(dists: list[np.ndarray], ranks, classes: np.ndarray | None = None) -> TokenStats:
    """Token statistics of a text whose position t has next-token distribution ``dists[t]``
    (sorted, most likely first) and whose token there has rank ``ranks[t]``: every
    expectation is known exactly."""
    ranks = np.asarray(ranks)
    rows = []
    for p, r in zip(dists, ranks):
        cum = np.cumsum(p)
        centred = cum - p / 2 - 0.5
        last = np.minimum(np.searchsorted(cum, np.array(NUCLEUS_PS) - 1e-12), len(p) - 1)
        rows.append({
            "logp": np.log(p[r - 1]), "mean": (p * np.log(p)).sum(),
            "var": (p * np.log(p) ** 2).sum() - (p * np.log(p)).sum() ** 2,
            "mass_above": cum[r - 1] - p[r - 1],
            "tail_mass": [max(0.0, 1 - cum[min(k, len(p)) - 1]) for k in TAIL_KS],
            "nucleus_size": last + 1, "nucleus_mass": np.maximum(0.0, 1 - cum[last]),
            "pit_m2": (p * centred ** 2).sum(), "pit_m4": (p * centred ** 4).sum()})
    n = len(ranks)
    return TokenStats(
        **{k: np.array([row[k] for row in rows]) for k in rows[0]}, rank=ranks,
        classes=np.zeros(n, dtype=np.uint8) if classes is None else classes, truncated=False)


def synthetic(ranks: np.ndarray, vocab: int = 100, classes: np.ndarray | None = None) -> TokenStats:
    """Token statistics of a text under a model that is uniform over ``vocab`` tokens at every
    position, the tokens seen having the given ranks."""
    return from_distributions([np.full(vocab, 1 / vocab)] * len(ranks), ranks, classes)


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
    nuclei = {n for n in kept if n.startswith("nucleus_")}  # 10 (1 - p) expected outside
    assert {"nucleus_0.5", "nucleus_0.75"} <= nuclei and not nuclei & {"nucleus_0.95", "nucleus_0.99"}
    assert kept[-2:] == ["pit", "pit_dispersion"]
    strict = DistributionDetector(statistic="tail", min_expected=100.0)
    assert [n for n in strict._rungs_that_can_show(stats, STATISTICS["tail"])
            if n.startswith("tail_")] == ["tail_1"]  # the rung that expects most, at least


def test_truncation_evidence_is_the_likelihood_ratio_at_the_narrowest_rung_that_holds():
    rng = np.random.default_rng(8)
    cut = synthetic(rng.integers(1, 21, 50))  # uniform over 100, the top 20 only
    evidence, rung = truncation_evidence(cut)
    assert LADDER[rung] == "tail_32"
    assert np.isclose(evidence, 50 * np.log(0.01 + 0.99 / 0.32))  # a slack of 0.01
    assert np.isclose(truncation_evidence(cut, slack=0.0)[0], -50 * np.log(0.32))
    assert truncation_evidence(synthetic(np.full(30, 100)))[0] == 0.0  # the last token: no rung
    # one token outside the top 32 costs log(slack), it does not erase the rest
    stray = synthetic(np.r_[rng.integers(1, 21, 49), 90])
    assert LADDER[truncation_evidence(stray)[1]] == "tail_32"
    assert np.isclose(truncation_evidence(stray)[0],
                      49 * np.log(0.01 + 0.99 / 0.32) + np.log(0.01))


def test_truncation_evidence_bounds_how_often_honest_text_scores_high():
    """Ville: at one rung an honest text reaches evidence s with chance at most exp(-s), so
    the best of the rungs at most len(LADDER) exp(-s), with or without slack."""
    rng = np.random.default_rng(9)
    p = 0.6 ** np.arange(1, 41)
    p /= p.sum()
    texts = [from_distributions([p] * 6, rng.choice(40, 6, p=p) + 1) for _ in range(3000)]
    for slack in (0.0, 0.01, 0.2):
        honest = np.array([truncation_evidence(t, slack)[0] for t in texts])
        assert honest.min() >= 0 and honest.max() > 2  # short texts: some do look truncated
        for s in (1.0, 2.0, 4.0, 6.0):
            assert np.mean(honest >= s) <= len(LADDER) * np.exp(-s) + 0.01


def test_the_nucleus_ladder_sees_top_p_truncation_that_no_fixed_k_holds():
    """Positions alternate between a sharp distribution (a nucleus of 4 tokens at p = 0.9) and
    a flat one (900 of 1000 tokens). Text from the 0.9 nucleus reaches ranks near 900 on the
    flat positions, so only ranks past 1024 bound it by count; the nucleus rung holds it."""
    rng = np.random.default_rng(10)
    sharp = 0.5 ** np.arange(1, 31)
    sharp /= sharp.sum()
    flat = np.full(1000, 1e-3)
    dists = [sharp, flat] * 80
    nucleus = [rng.choice(4, p=sharp[:4] / sharp[:4].sum()) + 1 if i % 2 == 0 else
               rng.integers(1, 901) for i in range(160)]
    cut = from_distributions(dists, nucleus)
    evidence, rung = truncation_evidence(cut)
    assert LADDER[rung] == "nucleus_0.9", LADDER[rung]
    inside = 1 - cut.nucleus_mass[:, NUCLEUS_PS.index(0.9)]
    assert np.isclose(evidence, np.log(0.01 + 0.99 / inside).sum())
    assert features(cut)["nucleus_0.9"] < -3  # no token outside, 13 expected
    honest = [rng.choice(30, p=sharp) + 1 if i % 2 == 0 else rng.integers(1, 1001)
              for i in range(160)]
    assert features(from_distributions(dists, honest))["nucleus_0.9"] > -3


@pytest.mark.embedded
def test_the_truncation_detector_sees_top_p_arithmetic_coding_and_not_the_zero_kl_codec(
        embedded, embedded64):
    """On the embedded model (the tiny random one re-tokenizes its own text too oddly for a
    statistic of which tokens were allowed): arithmetic coding of the top-p 0.9 nucleus
    against the same codec over the whole distribution, on 32-token answers."""
    prompts = [Prompt(f"q{i}", f"Give one tip about topic number {i}.") for i in range(40)]
    coded = {name: make_codec("arithmetic", **params).encode(
        embedded64, [p.prompt for p in prompts[:20]], ["10" * 200] * 20, b"k",
        max_new_tokens=32, batch_size=10)
        for name, params in (("top-p", {"top_p": 0.9}), ("zero-kl", {}))}
    honest = sample_clean(embedded, prompts, 40, max_new_tokens=32, seed=11, progress=False)
    fitted = make_detector("truncation", lm=embedded).fit(honest[:20])
    clean = fitted.score(honest[20:])
    assert _auroc(clean, fitted.score(coded["top-p"])) > 0.8
    assert _auroc(clean, fitted.score(coded["zero-kl"])) < 0.7
    rungs = [r for r in fitted.rungs(coded["top-p"]) if r]
    assert rungs.count("nucleus_0.9") >= len(coded["top-p"]) // 2  # it names the cut

def test_the_periodic_scan_finds_a_code_on_every_fourth_token_that_the_whole_text_dilutes():
    """Positions 1, 5, 9, ... take the head of a geometric distribution (a stride code), the
    others are honest samples: the scan names period 4 and phase 1, and its |z| there is well
    above the whole text's (the same shift over a quarter of the variance: twice, less noise)."""
    from detectors.periodic import phase_scan

    rng = np.random.default_rng(11)
    p = 0.7 ** np.arange(1, 61)
    p /= p.sum()
    n = 240
    ranks = rng.choice(60, n, p=p) + 1
    ranks[1::4] = 1
    coded = from_distributions([p] * n, ranks)
    z, period, phase = phase_scan(coded)
    whole = abs(features(coded)["fast_detectgpt"])
    assert (period, phase) == (4, 1) and z > 1.25 * whole and z > 5
    assert phase_scan(coded, max_period=1) == (pytest.approx(whole), 1, 0)


def test_the_periodic_detector_scores_the_scan_of_the_models_statistics(tiny):
    """On honest text the score is the scan of each text's statistics under the model, the
    strides it names are real ones, and a period below 1 is refused."""
    from detectors.periodic import PeriodicDetector, phase_scan

    honest = sample_clean(tiny, PROMPTS[:8], 8, max_new_tokens=24, seed=13, progress=False)
    detector = make_detector("periodic", lm=tiny).fit(honest)
    assert isinstance(detector, PeriodicDetector)
    expected = [phase_scan(s)[0] for s in token_stats(tiny, honest)]
    np.testing.assert_allclose(detector.score(honest), expected)
    assert np.all(detector.score(honest) >= abs(np.array(
        [features(s)["fast_detectgpt"] for s in token_stats(tiny, honest)])) - 1e-9)
    assert all(1 <= m <= 8 and 0 <= r < m for m, r in detector.strides(honest))
    with pytest.raises(Exception, match="max_period"):
        make_detector("periodic", lm=tiny, max_period=0).fit(honest)


def test_the_truncation_set_test_sums_each_rung_over_texts_and_keeps_ville_bound(tiny):
    """A cut that leaves 2% of the mass outside: one 64-token text gives about 1.3 nats, which
    honest text reaches by chance a quarter of the time; eight such texts give eight times as
    much at the same rung, and honest sets of eight stay under Ville's bound."""
    from detectors.distribution import rung_evidence

    rng = np.random.default_rng(14)
    p = np.r_[np.full(16, 0.98 / 16), np.full(984, 0.02 / 984)]
    cut_texts = [from_distributions([p] * 64, rng.integers(1, 17, 64)) for _ in range(8)]
    single = [truncation_evidence(t, slack=0.0)[0] for t in cut_texts]
    together = np.sum([rung_evidence(t, slack=0.0) for t in cut_texts], axis=0)
    assert max(single) < 2 and together.max() == pytest.approx(sum(single))
    assert LADDER[int(np.argmax(together))] == "tail_16"
    honest_sets = [np.sum([rung_evidence(from_distributions([p] * 64, rng.choice(1000, 64, p=p) + 1))
                           for _ in range(8)], axis=0).max() for _ in range(300)]
    for s in (2.0, 4.0, 6.0):
        assert np.mean(np.array(honest_sets) >= s) <= len(LADDER) * np.exp(-s) + 0.01

    honest = sample_clean(tiny, PROMPTS[:6], 6, max_new_tokens=24, seed=15, progress=False)
    detector = make_detector("truncation", lm=tiny).fit(honest)
    result = detector.set_test(honest)
    summed = np.sum([rung_evidence(s) for s in token_stats(tiny, honest)], axis=0)
    assert result["evidence"] == pytest.approx(max(0.0, summed.max())) and result["texts"] == 6
    assert 0 < result["p_bound"] <= 1
