"""The format detector: each kind of character-level anomaly is counted where it is planted and
nowhere else; plain text passes; a saved detector scores the same."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import load_detector, make_detector
from detectors.format_check import KINDS, format_counts
from latentcode.transcripts import Transcript

CLEAN = [
    "The quick brown fox jumps over the lazy dog.",
    "Here is a list:\n1. apples\n2. pears\n\nThat is all.",
    "Café au lait, s'il vous plaît. Naïve résumé.",
    "    indented code\n\tdef f(x): return x",
    "Greek letters on their own are fine: αβγ, and so is Кириллица.",
]

PLANTED = {  # kind -> text with exactly that anomaly
    "invisible": "zero\u200bwidth spaces hide\u200c bits",
    "odd_space": "a no\u00a0break space and a thin\u2009space",
    "space_run": "two  spaces between words",
    "trailing_space": "a line that ends in spaces   \nand another",
    "mixed_script": "p\u0430yp\u0430l with Cyrillic a",
    "not_nfc": "cafe\u0301 with a combining accent",
    "not_nfkc": "\ufb01ne ｆｕｌｌ width",
}


def transcripts(texts, label=None):
    return [Transcript(id=f"t{i}", prompt="p", text=t, label=label) for i, t in enumerate(texts)]


@pytest.mark.parametrize("kind", KINDS)
def test_each_count_fires_on_its_own_anomaly_and_no_other(kind):
    counts = format_counts(PLANTED[kind])
    assert counts[kind] >= 1
    assert all(v == 0 for k, v in counts.items() if k != kind), counts


def test_plain_text_counts_nothing():
    for text in CLEAN:
        assert not any(format_counts(text).values()), text


def test_planted_anomalies_score_above_every_clean_text_and_a_save_scores_the_same(tmp_path):
    detector = make_detector("format").fit(transcripts(CLEAN, label=0))
    clean = detector.score(transcripts(CLEAN))
    planted = detector.score(transcripts(PLANTED.values()))
    assert np.allclose(clean, 0.0)
    assert planted.min() > 2.0  # each a less than 1% event under the clean rates
    loaded = load_detector(detector.save(tmp_path / "format"))
    assert np.array_equal(loaded.score(transcripts(PLANTED.values())), planted)


def test_a_kind_common_on_clean_text_costs_less_than_a_kind_never_seen():
    tabs = [f"column\tvalue {i}\tmore" for i in range(50)]  # tabs inside lines, everywhere
    detector = make_detector("format").fit(transcripts(CLEAN + tabs, label=0))
    tab, zero_width = detector.score(transcripts(["one\ttab here", "one\u200bzero width"]))
    assert tab < 0.5 < zero_width
