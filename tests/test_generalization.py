"""Leave-one-scheme-out and clean-text false positives (latentcode.generalization), and the
matched prompts every comparison is held to."""

from __future__ import annotations

import numpy as np
import pytest
from test_battery import texts  # the battery's word-string transcripts

from latentcode.battery import NULL, check_matched, split_prompts
from latentcode.edits import make_edit
from latentcode.generalization import (
    SOURCES,
    false_positive_rates,
    leave_one_out,
    matrix_markdown,
    source_transcripts,
)
from latentcode.prompts import Prompt


def data(n=30):
    d = {}
    for i, (source, marker) in enumerate([("a", "zebra"), ("b", "zebra"), ("plain", None)]):
        for j, split in enumerate(("train", "test")):
            d[source, split] = texts(source, split, n, marker, seed=10 * i + j)
    for j, split in enumerate(("train", "test")):
        d[NULL, split] = texts(NULL, split, 3 * n, None, seed=100 + j, per_prompt=3)
    return d


def test_leaving_out_a_source_keeps_its_family_and_leaving_out_the_family_does_not():
    d = data()
    families = {"a": "marker", "b": "marker", "plain": "plain"}
    by_source = leave_one_out(d, ["tfidf"], None, families=families, leave_out="source")
    by_family = leave_one_out(d, ["tfidf"], None, families=families, leave_out="family")
    assert by_source["a"]["tfidf"]["auroc"] > 0.95  # fitted on b, which shares the marker
    assert abs(by_family["a"]["tfidf"]["auroc"] - 0.5) < 0.2  # fitted on plain text only
    assert abs(by_source["plain"]["tfidf"]["auroc"] - 0.5) < 0.2
    assert by_source["a"]["tfidf"]["n_neg"] == 90 and by_source["a"]["tfidf"]["n_pos"] == 30


def test_a_resumed_leave_one_out_keeps_measured_cells_and_fills_the_rest():
    d = data(12)
    seen = []
    planted = {"a": {"tfidf": {"auroc": 0.123, "se": 0.0, "n_neg": 1, "n_pos": 1}}}
    out = leave_one_out(d, ["tfidf"], None, done=planted, on_cell=lambda h, n, c: seen.append(h))
    assert out["a"]["tfidf"]["auroc"] == 0.123 and sorted(seen) == ["b", "plain"]
    table = matrix_markdown(out, ["tfidf"], {"a": {"family": "marker", "bits_per_token": 0.5}})
    assert "| a | marker | 0.50 | 0.12 ±0.00 | tfidf 0.12 |" in table


def test_false_positive_rates_are_calibrated_and_see_a_shifted_clean_set():
    d = data(60)
    calibration = texts(NULL, "cal", 200, None, seed=7)
    same = texts(NULL, "same", 200, None, seed=8)
    shifted = texts(NULL, "shifted", 200, "zebra", seed=9)  # clean, but with the marker word
    rates = false_positive_rates(d, calibration, {"same": same, "shifted": shifted}, ["tfidf"], None)
    row = rates["tfidf"]
    assert row["calibration"] <= 0.05 and row["same"] < 0.15 and row["shifted"] > 0.5
    assert row["n_same"] == 200


def test_the_battery_refuses_a_source_on_prompts_the_clean_side_does_not_answer():
    d = data(10)
    d["a", "test"] = texts("a", "other", 10, "zebra", seed=3)
    with pytest.raises(ValueError, match="same prompts"):
        check_matched(d)
    d = data(10)
    d[NULL, "test"] = d[NULL, "test"] + texts(NULL, "extra", 2, None, seed=4)
    with pytest.raises(ValueError, match="no source does"):
        check_matched(d)


def test_split_prompts_give_the_clean_side_the_sources_prompts_several_times_each():
    prompts = [Prompt(f"p{i}", f"prompt {i}") for i in range(50)]
    source = split_prompts(prompts, "test", 16)
    clean = split_prompts(prompts, "test", 48, distinct=16)
    assert {p.id for p in clean} == {p.id for p in source}
    assert all(sum(q.id == p.id for q in clean) == 3 for p in source)


def test_edit_sources_answer_the_clean_prompts_and_read_back(tiny, tmp_path):
    prompts = [Prompt(f"p{i}", f"Say something about {i}.") for i in range(6)]
    tiny.model.double()
    try:
        kw = {"out": tmp_path, "key": b"k", "max_new_tokens": 12, "payload_bits": 64,
              "batch_size": 6}
        clean = source_transcripts(tiny, NULL, "test", prompts, 12, distinct=4, **kw)
        stego = source_transcripts(tiny, "zero-width", "test", prompts, 4, distinct=4, **kw)
        again = source_transcripts(tiny, "zero-width", "test", prompts, 4, distinct=4, **kw)
    finally:
        tiny.model.float()
    assert {t.prompt for t in clean} == {t.prompt for t in stego} and len(clean) == 12
    assert [t.text for t in again] == [t.text for t in stego]  # served from the cache
    edit = make_edit("zero-width")
    for t in stego:
        assert t.source == "zero-width" and t.label == 1 and t.id.startswith("zero-width-test-")
        assert edit.read(t, b"k") == t.meta["edit_bits"]
    assert any("\u200b" in t.text for t in stego)
    assert SOURCES["zero-width"].family == "edits"
    check_matched({(NULL, "test"): clean, ("zero-width", "test"): stego,
                   (NULL, "train"): [], })
    assert np.mean([t.meta["bits_embedded"] for t in stego]) > 0


def test_the_benchmark_runs_end_to_end_and_resumes(tiny_folder, tmp_path, monkeypatch, capsys):
    import json
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "generalization.py"
    out = tmp_path / "gen"
    argv = [str(script), "--out", str(out), "--model", str(tiny_folder), "--sources",
            "huffman-k2,zero-width,discop", "--n-train", "8", "--n-test", "8",
            "--clean-multiple", "2", "--max-new-tokens", "8", "--detectors", "tfidf,format,tail"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["auroc"]) == {"huffman-k2", "zero-width", "discop"}
    assert all(set(cells) == {"tfidf", "format", "tail"} for cells in results["auroc"].values())
    assert results["auroc"]["zero-width"]["format"]["auroc"] > 0.9  # invisible characters
    assert results["sources"]["zero-width"]["family"] == "edits"
    fprs = results["false_positive_rates"]
    assert set(fprs) == {"tfidf", "format", "tail"}
    assert all(0 <= row["other prompts"] <= 1 for row in fprs.values())
    assert (out / "matrix-source.md").is_file() and (out / "matrix-source.png").is_file()
    assert "| huffman-k2 | truncation |" in printed
    runpy.run_path(str(script), run_name="__main__")  # resumed: every cell read back
    assert "AUROC" not in capsys.readouterr().out.split("| held-out source")[0]


def test_a_held_out_only_source_is_scored_but_never_fitted_on():
    d = data()
    families = {"a": "marker", "b": "marker", "plain": "plain"}
    out = leave_one_out(d, ["tfidf"], None, families=families, held_out_only=["b"])
    assert abs(out["a"]["tfidf"]["auroc"] - 0.5) < 0.2  # b, its only marker twin, was not fitted on
    assert out["b"]["tfidf"]["auroc"] > 0.95  # b itself is still scored, fitted on a
    assert SOURCES["style-2"].train is False and SOURCES["style-2"].family == "whole-text"


def test_the_style_code_keeps_the_cover_prompt_and_reads_back_by_likelihood(embedded64):
    from latentcode.codecs import make_codec

    prompts = [Prompt(f"p{i}", q) for i, q in enumerate((
        "How do I keep basil alive on a windowsill?", "What should I pack for a weekend hike?",
        "Explain what a mortgage is.", "Give me ideas for a rainy afternoon with kids."))]
    payloads = ["00" + "1" * 10, "01" + "0" * 10, "10" + "1" * 10, "11" + "0" * 10]
    codec = make_codec("style", bits=2)
    made = codec.encode(embedded64, prompts, payloads, b"k", max_new_tokens=32, batch_size=4,
                        ids=[f"style-{i}" for i in range(4)])
    assert [t.prompt for t in made] == [p.prompt for p in prompts]  # the instruction is hidden
    assert [t.payload for t in made] == [p[:2] for p in payloads] and {t.label for t in made} == {1}
    assert all(t.meta["bits_embedded"] == 2 and t.meta["codec"] == "style" for t in made)
    read = [codec.decode(embedded64, t, b"k").recovered for t in made]
    assert sum(r == t.payload for r, t in zip(read, made)) >= 3, read
    assert np.mean([t.meta["kl_nats"] for t in made]) > 0  # the instruction moved the text


def test_the_zero_kl_check_counts_cells_outside_the_band_against_chance():
    from latentcode.generalization import zero_kl_check

    cell = {"se": 0.03, "n_pos": 192, "n_neg": 192}
    text = zero_kl_check({"arithmetic": {"tail": {**cell, "auroc": 0.52},
                                         "tfidf": {**cell, "auroc": 0.58}},
                          "discop": {"tail": {**cell, "auroc": 0.47}}})
    assert "3 cells" in text and "1 outside 0.5 +/- 0.06" in text and "arithmetic / tfidf 0.580" in text
    expected = float(text.split(", ")[-1].split(" expected")[0].split("0.06, ")[-1])
    assert 0.05 < expected < 0.5  # about 5% of three cells at 192 x 192
    assert "no zero-KL source" in zero_kl_check({})
