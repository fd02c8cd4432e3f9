"""`latentcode demo` end to end at toy size on the embedded model: every stage, the report, resume."""

from __future__ import annotations

import json

import pytest

from latentcode.cli import main
from latentcode.transcripts import read_transcripts

ARGS = ["--n-train", "4", "--n-test", "4", "--clean-multiple", "2", "--max-new-tokens", "6", "--sources", "huffman-k2,discop",
        "--detectors", "distribution,tfidf", "--policy-steps", "1", "--quiet"]


@pytest.mark.embedded
def test_demo_runs_every_stage_writes_the_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *ARGS]) == 0
    printed = capsys.readouterr().out
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert stage in printed
    assert "best detector" in printed and str(out / "report" / "report.html") in printed

    scored = read_transcripts(out / "scored-test.jsonl")
    assert {t.source for t in scored} == {"null", "huffman-k2", "discop", "policy"}
    assert all(set(t.scores) == {"distribution", "tfidf"} for t in scored)
    by_source = {s: sum(t.source == s for t in scored) for s in ("null", "discop")}
    assert by_source["null"] == 2 * 4 and by_source["discop"] == 4  # --clean-multiple 2
    test_prompts = {t.prompt for t in scored}
    for source in ("null", "huffman-k2", "policy"):  # fitted on the other half of the prompts
        assert not test_prompts & {t.prompt for t in read_transcripts(
            out / "transcripts" / f"{source}-train.jsonl")}
    # matched: every source answers exactly the clean side's test prompts, each clean prompt
    # twice (--clean-multiple 2), so no detector can tell the sides apart by what was asked
    clean_prompts = [t.prompt for t in scored if t.source == "null"]
    for source in ("huffman-k2", "discop", "policy"):
        assert {t.prompt for t in scored if t.source == source} == set(clean_prompts)
    assert all(clean_prompts.count(p) == 2 for p in clean_prompts)
    policy = [t for t in scored if t.source == "policy"]
    assert all(t.label == 1 and t.payload in ("0", "1") and "correct" in t.meta for t in policy)

    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert set(metrics["sources"]) == {"huffman-k2", "discop", "policy"}
    assert set(metrics["detectors"]) == {"distribution", "tfidf"}
    summary = json.loads((out / "summary.json").read_text())
    assert [r["source"] for r in summary["rows"]] == sorted(metrics["sources"])

    before = {p: p.read_bytes() for p in (out / "transcripts").glob("*.jsonl")}
    assert main(["demo", "--out", str(out), *ARGS]) == 0
    again = capsys.readouterr().out
    assert again.count("[resume]") >= 2 * 3 + 2  # every codec file and every detector
    assert {p: p.read_bytes() for p in (out / "transcripts").glob("*.jsonl")} == before

    assert main(["demo", "--out", str(out), *ARGS[:-1], "--seed", "1"]) == 2
    assert "another config" in capsys.readouterr().err


def test_demo_names_an_unknown_source_or_detector(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--sources", "rot13"]) == 2
    assert "rot13" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert main(["demo", "--out", str(tmp_path / "d"), "--detectors", "psychic"]) == 2
    assert "psychic" in capsys.readouterr().err
