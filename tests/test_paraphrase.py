"""Paraphrasing, sentence embeddings, the paraphrase detector and paraphrase ablation."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detectors import load_detector, make_detector
from detectors.paraphrase import binary_entropy, bit_error_rate, paraphrase_ablation
from latentcode.paraphrase import paraphrase_texts, paraphrase_transcripts
from latentcode.prompts import Prompt
from latentcode.sampling import sample_clean

PROMPTS = [Prompt(f"p{i}", f"Write about topic number {i}.") for i in range(30)]


def _auroc(neg, pos):
    return roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos])


def test_paraphrases_are_one_per_text_and_reproducible(tiny):
    texts = ["The sea was calm that morning.", "Numbers: 1, 2, 3.", "x"]
    first = paraphrase_texts(tiny, texts, max_new_tokens=12)
    assert len(first) == 3 and all(p.strip() for p in first)
    assert paraphrase_texts(tiny, texts, max_new_tokens=12) == first
    assert paraphrase_texts(tiny, texts[::-1], max_new_tokens=12) == first[::-1]
    with pytest.raises(ValueError, match="{text}"):
        paraphrase_texts(tiny, texts, instruction="no placeholder")


def test_paraphrase_detector_flags_text_whose_wording_is_unlikely_and_not_clean(tiny, tmp_path):
    a = sample_clean(tiny, PROMPTS, 40, max_new_tokens=16, seed=1, progress=False)
    b = sample_clean(tiny, PROMPTS, 40, max_new_tokens=16, seed=2, progress=False)
    hot = sample_clean(tiny, PROMPTS, 40, max_new_tokens=16, seed=3, temperature=3.0,
                       progress=False)
    det = make_detector("paraphrase", lm=tiny).fit(a)
    assert _auroc(det.score(b), det.score(hot)) > 0.9
    assert abs(_auroc(det.score(a[:20]), det.score(b)) - 0.5) < 0.2
    det.save(tmp_path / "para")
    back = load_detector(tmp_path / "para", lm=tiny)
    np.testing.assert_array_equal(back.score(hot), det.score(hot))


def test_bit_error_rate_counts_missing_bits_as_coin_flips():
    assert bit_error_rate("1010", "1010") == 0
    assert bit_error_rate("1010", "0101") == 1
    assert bit_error_rate("1010", None) == 0.5
    assert bit_error_rate("1010", "10") == 0.25
    assert binary_entropy(0.5) == 1 and binary_entropy(0) == 0 and binary_entropy(1) == 0


def test_ablation_measures_bits_surviving_a_paraphrase(tiny):
    """Huffman's bits live in the wording: they decode from the text, not from its paraphrase."""
    from latentcode.codecs import make_codec
    from latentcode.payload import random_payloads

    tiny.model.double()
    try:
        codec = make_codec("huffman")
        payloads = random_payloads(6, 8, seed=3)
        stego = codec.encode(tiny, [p.prompt for p in PROMPTS[:6]], payloads, b"key",
                             max_new_tokens=48)

        def decode(t):
            return codec.decode(tiny, t, b"key").bits

        result = paraphrase_ablation(tiny, stego, decode, max_new_tokens=24)
    finally:
        tiny.model.float()
    s = result.summary()
    assert s["bit_accuracy_before"] == 1.0 and s["capacity_bits_before"] == 8.0
    assert s["capacity_bits_after"] < 4.0
    assert [t.id for t in result.paraphrased] == [t.id for t in stego]
    assert all(t.meta["paraphrase_of_text"] == o.text for t, o in zip(result.paraphrased, stego))


def test_paraphrased_transcripts_keep_labels_and_drop_old_scores(tiny):
    from latentcode.transcripts import Transcript

    t = Transcript(id="a", prompt="Say hi.", text="Hello!", label=1, payload="01",
                   source="huffman", scores={"x": 1.0})
    (p,) = paraphrase_transcripts(tiny, [t], max_new_tokens=8)
    assert (p.id, p.label, p.payload, p.source, p.scores) == ("a", 1, "01", "huffman", {})


def test_sentence_embeddings_rank_a_paraphrase_above_an_unrelated_sentence():
    from latentcode.embeddings import SentenceEmbedder

    emb = SentenceEmbedder()
    sims = emb.similarity(["The cat sat on the mat.", "The cat sat on the mat."],
                          ["A cat was sitting on the mat.", "Stock prices fell sharply today."])
    assert sims[0] > 0.7 and sims[1] < 0.3
    vectors = emb.encode(["one", "two"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_minilm_classifier_learns_a_textual_difference_and_reloads_exactly(tmp_path):
    """Fine-tuned MiniLM (top layer and head) separates held-out text with a marker word
    from text without; saved as safetensors, it reloads to identical scores."""
    from latentcode.transcripts import Transcript

    rng = np.random.default_rng(0)
    words = ["river", "stone", "cloud", "bread", "music", "garden", "window", "paper", "light", "road"]

    def make(n, label, prefix):
        out = []
        for i in range(n):
            body = " ".join(rng.choice(words, 8))
            text = f"{body} indeed" if label else body
            out.append(Transcript(id=f"{prefix}{i}", text=text, label=label))
        return out

    train = make(24, 0, "a") + make(24, 1, "b")
    test = make(20, 0, "c") + make(20, 1, "d")
    det = make_detector("minilm", train_layers=1, epochs=4, lr=3e-4).fit(train)
    scores = det.score(test)
    assert _auroc(scores[:20], scores[20:]) > 0.95
    det.save(tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["detector.json", "state.safetensors"]
    back = load_detector(tmp_path / "m")
    np.testing.assert_allclose(back.score(test), scores, atol=1e-5)
