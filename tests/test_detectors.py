"""Detectors: the shared API (registry, save/load, input checks) and each detector on tiny models."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from detectors import DETECTORS, DetectorError, load_detector, make_detector
from detectors.distribution import features
from detectors.token_stats import NUCLEUS_PS, TAIL_KS, clear_cache, token_stats
from latentcode.prompts import Prompt
from latentcode.sampling import sample_clean
from latentcode.transcripts import Transcript

PROMPTS = [Prompt(f"p{i}", f"Write about topic number {i}.") for i in range(40)]


@pytest.fixture(scope="module")
def sets(tiny):
    """Two independent clean sets from the tiny model, and an obviously different one (the
    same model at temperature 3: flatter, lower-likelihood text)."""
    a = sample_clean(tiny, PROMPTS, 60, max_new_tokens=24, seed=1, progress=False)
    b = sample_clean(tiny, PROMPTS, 60, max_new_tokens=24, seed=2, progress=False)
    hot = sample_clean(tiny, PROMPTS, 60, max_new_tokens=24, seed=3, temperature=3.0,
                       progress=False)
    for t in hot:
        t.label = 1
    return a, b, hot


def _auroc(clean_scores, other_scores):
    y = np.r_[np.zeros(len(clean_scores)), np.ones(len(other_scores))]
    return roc_auc_score(y, np.r_[clean_scores, other_scores])


def test_forward_caches_serve_repeats_and_never_outlive_a_weight_update(tiny):
    from detectors.probe import pooled_hidden_states

    texts = [Transcript(id="c1", prompt="Hi", text="Hello there, friend.")]
    clear_cache()
    first, again = token_stats(tiny, texts)[0], token_stats(tiny, texts)[0]
    assert again is first  # served from the cache
    pooled = pooled_hidden_states(tiny, texts, [-1])
    np.testing.assert_array_equal(pooled_hidden_states(tiny, texts, [-1]), pooled)
    weight, norm = tiny.model.get_output_embeddings().weight, tiny.model.model.norm.weight
    saved, saved_norm = weight.detach().clone(), norm.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(1.5)  # what an optimizer step does: an in-place update
            norm.mul_(1.5)
        after = token_stats(tiny, texts)[0]
        assert after is not first and not np.allclose(after.logp, first.logp)
        assert not np.allclose(pooled_hidden_states(tiny, texts, [-1]), pooled)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
            norm.copy_(saved_norm)
        clear_cache()


def test_token_stats_match_a_direct_computation_one_text_at_a_time(tiny):
    texts = [Transcript(id=f"t{i}", prompt=p, text=s) for i, (p, s) in enumerate(
        [("Hi", "Hello there, friend."), ("Say more.", "A much longer answer, with words."),
         ("x", "y")])]
    clear_cache()
    batched = token_stats(tiny, texts, batch_size=3)
    clear_cache()
    for t, got in zip(texts, batched):
        prompt = tiny.prompt_ids([t.prompt])[0]
        ids = tiny.tokenizer(t.text, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = tiny.model(input_ids=torch.tensor([prompt + ids])).logits[0].double()
        lp = torch.log_softmax(logits[len(prompt) - 1:-1], -1).numpy()
        logp = lp[np.arange(len(ids)), ids]
        rank = np.array([(row > row[i]).sum() + 1 for row, i in zip(lp, ids)])
        p = np.exp(lp)
        mean = (p * lp).sum(-1)
        np.testing.assert_allclose(got.logp, logp, atol=2e-4)
        # float32 logits: ranks of near-tied tokens may swap, never by much
        assert np.mean(got.rank == rank) > 0.5 and np.abs(np.log(got.rank / rank)).max() < 0.1
        np.testing.assert_allclose(got.mean, mean, atol=2e-4)
        np.testing.assert_allclose(got.var, (p * lp ** 2).sum(-1) - mean ** 2, atol=2e-3)
        above = np.array([row[row > row[i]].sum() for row, i in zip(p, ids)])
        np.testing.assert_allclose(got.mass_above, above, atol=1e-4)
        top = -np.sort(-p, axis=1)
        np.testing.assert_allclose(got.tail_mass,
                                   [[1 - row[:k].sum() for k in TAIL_KS] for row in top], atol=1e-4)
        cum = np.cumsum(top, axis=1)  # the nucleus: the fewest top tokens of mass >= p
        for j, p_ in enumerate(NUCLEUS_PS):
            size = (cum < p_).sum(1) + 1
            near = np.abs(cum[np.arange(len(cum)), size - 1] - p_) < 1e-5  # float32 ties
            assert np.all((got.nucleus_size[:, j] == size) | near)
            np.testing.assert_allclose(got.nucleus_mass[:, j], 1 - cum[np.arange(len(cum)), size - 1],
                                       atol=1e-4)
        assert not got.truncated


def test_token_stats_truncate_long_texts_and_say_so(tiny):
    t = Transcript(id="long", prompt="p", text="word " * 200)
    stats = token_stats(tiny, [t], max_tokens=16)[0]
    assert len(stats) == 16 and stats.truncated


def test_fast_detectgpt_is_far_lower_for_text_sampled_hotter(tiny, sets):
    """The analytic criterion (Bao et al. 2024) drops for text sampled at temperature 3. (On the
    tiny random model it is not centred on 0 for its own samples: re-tokenizing its odd token
    splits gives more likely tokens than the sampled ones.)"""
    a, _, hot = sets
    crit = np.array([features(s)["fast_detectgpt"] for s in token_stats(tiny, a)])
    hot_crit = np.array([features(s)["fast_detectgpt"] for s in token_stats(tiny, hot)])
    assert hot_crit.mean() < crit.mean() - 3


def test_tail_statistics_see_truncated_sampling_without_a_reference(tiny, sets):
    """Text drawn from a narrow nucleus (top-p 0.001: a few dozen tokens of the near-uniform
    random model) has fewer tokens outside the model's top k than the
    model expects; the tail z-scores say so before any fitting, and are near each other for
    two independent honest sets."""
    a, b, _ = sets
    cut = sample_clean(tiny, PROMPTS, 60, max_new_tokens=24, seed=4, top_p=0.001, progress=False)

    def tail(ts, k):
        return np.array([features(s)[f"tail_{k}"] for s in token_stats(tiny, ts)])

    for k in (4, 16):
        assert tail(cut, k).mean() < tail(a, k).mean() - 2  # a deficit of tail tokens
        assert abs(tail(a, k).mean() - tail(b, k).mean()) < 0.5
    stats = token_stats(tiny, a[:3])
    for st in stats:  # the tail mass shrinks with k; the PIT part stays in [0, 1)
        assert np.all(np.diff(st.tail_mass, axis=1) <= 1e-6) and np.all(st.tail_mass >= 0)
        assert np.all((st.mass_above >= 0) & (st.mass_above < 1))
    fitted = make_detector("tail", lm=tiny).fit(a)
    assert _auroc(fitted.score(b), fitted.score(cut)) > 0.9
    fresh = make_detector("tail", lm=tiny).fit(b[:30])  # identical distributions: near chance
    assert abs(_auroc(fresh.score(b[30:]), fresh.score(a[:30])) - 0.5) < 0.2
    # (text sampled at temperature 3 is no tail deficit: on this near-uniform model the tail
    # statistics do not see it, which is why they stay out of the "distribution" omnibus)


@pytest.mark.parametrize("name", ["distribution", "loglik", "logrank", "fast-detectgpt", "gltr"])
def test_distribution_detectors_separate_different_text_and_not_identical(tiny, sets, name):
    a, b, hot = sets
    det = make_detector(name, lm=tiny).fit(a)
    # GLTR's buckets are coarse for a 49k-token random model: weaker, still clearly above chance
    assert _auroc(det.score(b), det.score(hot)) > (0.6 if name == "gltr" else 0.9)
    # identical distributions: fit on half of b, compare the other half with fresh samples
    fresh = make_detector(name, lm=tiny).fit(b[:30])
    assert abs(_auroc(fresh.score(b[30:]), fresh.score(a[:30])) - 0.5) < 0.2


def test_set_tests_give_small_p_for_a_different_set_only(tiny, sets):
    a, b, hot = sets
    det = make_detector("distribution", lm=tiny).fit(a)
    assert det.set_test(hot)["ks_log_rank_p"] < 1e-6
    assert det.set_test(hot)["chi2_gltr_p"] < 1e-6
    same = det.set_test(b)
    assert same["ks_log_rank_p"] > 1e-3 and same["tokens"] > 500


def test_save_and_load_give_identical_scores(tiny, sets, tmp_path):
    a, b, _ = sets
    det = make_detector("fast-detectgpt", lm=tiny, max_tokens=20).fit(a)
    det.save(tmp_path / "det")
    det.save(tmp_path / "det")  # overwrite in place
    back = load_detector(tmp_path / "det", lm=tiny)
    assert back.name == "fast-detectgpt" and back.max_tokens == 20
    np.testing.assert_array_equal(back.score(b), det.score(b))
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["detector.json", "state.safetensors"]


def test_bad_input_gives_clear_errors(tiny, sets, tmp_path):
    a, _, hot = sets
    det = make_detector("distribution", lm=tiny)
    with pytest.raises(DetectorError, match="not fitted"):
        det.score(a)
    with pytest.raises(DetectorError, match="no transcripts"):
        det.fit([])
    with pytest.raises(DetectorError, match="no clean"):
        det.fit(hot)  # every one labelled 1
    with pytest.raises(DetectorError, match="needs a language model"):
        make_detector("loglik")
    with pytest.raises(DetectorError, match="unknown detector"):
        make_detector("nope")
    with pytest.raises(DetectorError, match="no detector.json"):
        load_detector(tmp_path)
    (tmp_path / "detector.json").write_text('{"detector": "tail"}')
    with pytest.raises(DetectorError, match="not a detector file .no params, state"):
        load_detector(tmp_path)
    with pytest.raises(DetectorError, match="at least 2"):
        det.fit(a[:1])


def test_every_registered_detector_has_a_docstring():
    for name, factory in DETECTORS.items():
        assert factory.__doc__, name


@pytest.mark.embedded
def test_cli_detect_scores_refuses_overlap_and_saves_detectors(sets, tmp_path):
    from latentcode.cli import main
    from latentcode.transcripts import read_transcripts, write_transcripts

    a, b, hot = sets
    write_transcripts(tmp_path / "clean.jsonl", a)
    write_transcripts(tmp_path / "test.jsonl", b[:10] + hot[:10])
    out = tmp_path / "scored.jsonl"
    args = ["detect", str(tmp_path / "test.jsonl"), "--detectors", "loglik,fast-detectgpt",
            "--reference", str(tmp_path / "clean.jsonl"), "--out", str(out)]
    assert main(args + ["--save", str(tmp_path / "fitted")]) == 0
    scored = read_transcripts(out)
    assert [t.id for t in scored] == [t.id for t in b[:10] + hot[:10]]
    assert all(set(t.scores) == {"loglik", "fast-detectgpt"} for t in scored)
    assert (tmp_path / "scored.jsonl.config.json").is_file()
    # the saved detectors give the same scores without refitting
    again = tmp_path / "again.jsonl"
    assert main(["detect", str(tmp_path / "test.jsonl"), "--detectors", "loglik,fast-detectgpt",
                 "--load", str(tmp_path / "fitted"), "--out", str(again)]) == 0
    assert [t.scores for t in read_transcripts(again)] == [t.scores for t in scored]
    # scoring the fitting data is refused unless asked for
    assert main(["detect", str(tmp_path / "clean.jsonl"), "--detectors", "loglik", "--reference",
                 str(tmp_path / "clean.jsonl"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert not (tmp_path / "x.jsonl").exists()


def _labelled(texts, label, prefix):
    return [Transcript(id=f"{prefix}{i}", prompt="p", text=t, label=label) for i, t in enumerate(texts)]


def test_tfidf_classifier_learns_a_textual_difference_and_not_noise(tmp_path):
    rng = np.random.default_rng(0)
    words = ["river", "stone", "light", "green", "quiet", "north", "table", "cloud"]

    def texts(n, extra=None):
        out = []
        for _ in range(n):
            w = list(rng.choice(words, size=12))
            if extra:
                w[rng.integers(12)] = extra
            out.append(" ".join(w))
        return out

    train = _labelled(texts(60), 0, "c") + _labelled(texts(60, "zebra"), 1, "s")
    test = _labelled(texts(40), 0, "tc") + _labelled(texts(40, "zebra"), 1, "ts")
    det = make_detector("tfidf").fit(train)
    y = [t.label for t in test]
    assert roc_auc_score(y, det.score(test)) > 0.99
    det.save(tmp_path / "tfidf")
    back = load_detector(tmp_path / "tfidf")
    np.testing.assert_array_equal(back.score(test), det.score(test))
    # the same distribution under both labels: near chance
    noise = make_detector("tfidf").fit(_labelled(texts(60), 0, "a") + _labelled(texts(60), 1, "b"))
    fresh = _labelled(texts(100), 0, "x") + _labelled(texts(100), 1, "y")
    assert abs(roc_auc_score([t.label for t in fresh], noise.score(fresh)) - 0.5) < 0.12
    with pytest.raises(DetectorError, match="both classes"):
        make_detector("tfidf").fit(_labelled(texts(5), 0, "o"))


def test_probe_separates_different_text_held_out_and_not_identical(tiny, sets, tmp_path):
    """A word that only stego texts use moves the pooled activations; a random model's
    activations say little about sampling temperature, so the difference here is lexical."""
    a, b, _ = sets
    rng = np.random.default_rng(1)
    filler = ["the", "river", "runs", "past", "old", "stone", "walls", "at", "dawn", "and"]

    def texts(n, word, label, prefix):
        out = []
        for i in range(n):
            w = list(rng.choice(filler, size=10))
            if word:
                w[rng.integers(10)] = word
            out.append(Transcript(id=f"{prefix}{i}", prompt="p", text=" ".join(w), label=label))
        return out

    clean, stego = texts(80, None, 0, "c"), texts(80, "Zebra", 1, "s")
    det = make_detector("probe", lm=tiny, layers=[-1, 1]).fit(clean[:50] + stego[:50])
    assert _auroc(det.score(clean[50:]), det.score(stego[50:])) > 0.9
    det.save(tmp_path / "probe")
    np.testing.assert_allclose(load_detector(tmp_path / "probe", lm=tiny).score(stego[50:]),
                               det.score(stego[50:]), rtol=0, atol=1e-12)
    same = [Transcript(**{**vars(t), "label": 1}) for t in b[:30]]
    clean_a = [Transcript(**{**vars(t), "label": 0}) for t in a[:30]]
    noise = make_detector("probe", lm=tiny).fit(clean_a + same)
    assert abs(_auroc(noise.score(a[30:]), noise.score(b[30:])) - 0.5) < 0.2
    with pytest.raises(DetectorError, match="out of range"):
        make_detector("probe", lm=tiny, layers=[7]).fit(clean[:4] + stego[:4])


def test_payload_probe_reads_a_bit_written_in_the_words_and_not_a_random_one(tiny):
    from detectors.probe import payload_probe

    rng = np.random.default_rng(0)
    filler = ["the", "river", "runs", "past", "old", "stone", "walls", "at", "dawn"]
    rows = []
    for i in range(80):
        bits = "".join(rng.choice(["0", "1"], size=4))
        first = "Alpha" if bits[0] == "1" else "Omega"
        text = " ".join([first] + list(rng.choice(filler, size=8)))
        rows.append(Transcript(id=f"r{i}", prompt="Say something.", text=text, label=1, payload=bits))
    result = payload_probe(tiny, rows, n_bits=4)
    assert result["bit_accuracy"][0] > 0.9
    assert all(0.2 < acc < 0.8 for acc in result["bit_accuracy"][1:])
    assert result["p_value"] < 1e-3
    chance = payload_probe(tiny, [Transcript(**{**vars(t), "payload": t.payload[1:] + "0"})
                                  for t in rows], n_bits=3)
    assert chance["p_value"] > 1e-3 and abs(chance["accuracy"] - 0.5) < 0.15


def test_overseer_reads_the_yes_no_logit_gap_batched_as_one_at_a_time(tiny, sets, tmp_path):
    """Batches read the question's shared words (and a shared prompt) once: every score still
    equals one plain forward pass over the whole text."""
    from detectors.overseer import answer_ids

    a, b, _ = sets
    det = make_detector("overseer", lm=tiny, batch_size=4).fit(a[:10])
    yes, no = answer_ids(tiny.tokenizer, "Yes"), answer_ids(tiny.tokenizer, "No")
    texts = [Transcript(id=f"o{i}", prompt=p, text=t) for i, (p, t) in enumerate(
        [("Name a colour.", "Blue."), ("Name a colour.", "Red, like a rose."),
         ("Name a colour.", "Blue."), ("Say hi.", "Hello!"), ("Count.", "One two three.")])]
    for t, score in zip(texts + b[:6], np.r_[det.raw_scores(texts), det.raw_scores(b[:6])]):
        ids = tiny.prompt_ids([det.question.format(prompt=t.prompt, text=t.text)])[0]
        with torch.inference_mode():
            logits = tiny.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
        direct = float(torch.logsumexp(logits[yes], 0) - torch.logsumexp(logits[no], 0))
        assert score == pytest.approx(direct, abs=1e-4)
    got = det.raw_scores(b[:6])
    np.testing.assert_allclose(got, det.raw_scores(b[:6][::-1])[::-1], atol=1e-4)
    assert np.mean(det.score(a[:10])) == pytest.approx(0, abs=1e-9)
    det.save(tmp_path / "o")
    np.testing.assert_array_equal(load_detector(tmp_path / "o", lm=tiny).score(b[:3]),
                                  det.score(b[:3]))



@pytest.mark.parametrize("learn_cold", [True, False])
def test_stats_lr_learns_the_direction_of_a_shift_either_way(tiny, sets, learn_cold, tmp_path):
    """Text more likely than honest samples (cold) or less (hot): one detector, fitted on
    labelled examples, finds either, and learns which way it points: fitted on one, it scores
    the opposite shift as less suspicious than clean text."""
    a, b, hot = sets
    cold = sample_clean(tiny, PROMPTS, 60, max_new_tokens=24, seed=4, temperature=0.4,
                        progress=False)
    for t in cold:
        t.label = 1
    shifted, opposite = (cold, hot) if learn_cold else (hot, cold)
    detector = make_detector("stats-lr", lm=tiny).fit(a[:30] + shifted[:30])
    clean = detector.score(b[30:])
    assert _auroc(clean, detector.score(shifted[30:])) > 0.85
    assert _auroc(clean, detector.score(opposite[30:])) < 0.45  # measured 0.39 and below 0.3
    loaded = load_detector(detector.save(tmp_path / "stats-lr"), lm=tiny)
    np.testing.assert_array_equal(loaded.score(shifted[30:]), detector.score(shifted[30:]))
