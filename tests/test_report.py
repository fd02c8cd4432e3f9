"""The ROC report: exact metrics, honest intervals, clear errors, an inert and complete page."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from latentcode.cli import main as cli_main
from latentcode.report import (
    ReportInputError,
    bootstrap_auroc_ci,
    build_report,
    detector_metrics,
    load_scored,
    tpr_at_fpr,
)
from latentcode.transcripts import Transcript, TranscriptError, write_transcripts

INJECTED = '<script>document.documentElement.setAttribute("data-pwned", "1")</script><b>bold?</b>'


def scored_transcripts(n_clean=120, n_stego=120, seed=0, detectors=("loglik", "probe")):
    """Clean texts and two stego sources at known bits/token, scored by fake detectors."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_clean):
        out.append(Transcript(id=f"clean-{i}", text=f"clean text {i}", label=0, source="null",
                              meta={"n_tokens": 64},
                              scores={d: float(rng.normal()) for d in detectors}))
    for i in range(n_stego):
        source, bits = ("huffman", 2.0) if i % 2 else ("discop", 0.8)
        shift = 1.5 if source == "huffman" else 0.1
        text = INJECTED if i == 0 else f"stego text {i}"
        scores = {d: float(rng.normal(shift * (k + 1))) for k, d in enumerate(detectors)}
        if i == 0:  # the most suspicious one, so the page shows its text
            scores = {d: 50.0 for d in detectors}
        out.append(Transcript(id=f"stego-{i}", text=text, label=1, source=source,
                              payload="0101", meta={"n_tokens": 64, "bits_embedded": bits * 64},
                              scores=scores))
    return out


# ------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_sklearn_exactly_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = rng.integers(0, 12, 300).astype(float) + labels  # many ties
    assert detector_metrics(labels, scores, n_boot=10)["auroc"] == roc_auc_score(labels, scores)


def brute_force_tpr_at_fpr(labels, scores, max_fpr):
    """Try every threshold (each distinct score, and one above all); keep the best allowed."""
    best = (0.0, 0.0, None)
    n_pos, n_neg = (labels == 1).sum(), (labels == 0).sum()
    for thr in np.unique(scores):
        flagged = scores >= thr
        fpr = (flagged & (labels == 0)).sum() / n_neg
        tpr = (flagged & (labels == 1)).sum() / n_pos
        if fpr <= max_fpr and tpr > best[0]:
            best = (tpr, fpr, thr)
    return best


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("max_fpr", [0.01, 0.05, 0.2])
def test_tpr_at_fpr_is_the_brute_force_optimum(seed, max_fpr):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 400))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    ties = rng.random() < 0.5
    scores = rng.normal(labels * rng.uniform(0, 3), 1, n)
    if ties:
        scores = np.round(scores * 2) / 2
    point = tpr_at_fpr(labels, scores, max_fpr)
    tpr, _, thr = brute_force_tpr_at_fpr(labels, scores, max_fpr)
    assert point.tpr == pytest.approx(tpr, abs=1e-12)
    assert point.fpr <= max_fpr + 1e-12
    if thr is None:
        assert point.tpr == 0.0 and point.threshold is None
    else:
        flagged = scores >= point.threshold  # the reported threshold gives the reported point
        assert flagged[labels == 1].mean() == pytest.approx(point.tpr)
        assert flagged[labels == 0].mean() == pytest.approx(point.fpr)


def test_bootstrap_interval_is_seeded():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    scores = rng.normal(labels, 1)
    assert bootstrap_auroc_ci(labels, scores, seed=1) == bootstrap_auroc_ci(labels, scores, seed=1)
    assert bootstrap_auroc_ci(labels, scores, seed=1) != bootstrap_auroc_ci(labels, scores, seed=2)


def test_bootstrap_interval_covers_the_true_auroc_at_about_the_nominal_rate():
    """Binormal scores with a unit shift: the true AUROC is Phi(1/sqrt(2)) = 0.760."""
    true_auroc = norm.cdf(1 / math.sqrt(2))
    rng = np.random.default_rng(0)
    sims, hits = 300, 0
    labels = np.r_[np.zeros(80, int), np.ones(80, int)]
    for i in range(sims):
        scores = rng.normal(labels.astype(float), 1)
        low, high = bootstrap_auroc_ci(labels, scores, n_boot=400, seed=i)
        hits += low <= true_auroc <= high
    coverage = hits / sims  # binomial SE at 0.95 and 300 draws: 0.013
    assert 0.90 <= coverage <= 0.99, coverage


def test_metrics_refuse_nan_and_single_class():
    with pytest.raises(ValueError, match="NaN or infinite"):
        detector_metrics([0, 1, 1], [0.1, math.nan, 0.3])
    with pytest.raises(ValueError, match="both classes"):
        detector_metrics([1, 1, 1], [0.1, 0.2, 0.3])


# -------------------------------------------------------------------------------- inputs


def write(path, transcripts):
    write_transcripts(path, transcripts)
    return str(path)


def test_files_with_the_same_ids_are_merged_and_disjoint_files_concatenated(tmp_path):
    ts = scored_transcripts(10, 10, detectors=("a", "b"))
    only_a = [Transcript(**{**vars(t), "scores": {"a": t.scores["a"]}}) for t in ts]
    only_b = [Transcript(**{**vars(t), "scores": {"b": t.scores["b"]}}) for t in ts]
    merged = load_scored([write(tmp_path / "a.jsonl", only_a), write(tmp_path / "b.jsonl", only_b)])
    assert merged.detectors == ["a", "b"] and len(merged.transcripts) == 20
    assert merged.scores("b") == [t.scores["b"] for t in ts]
    clean, stego = ts[:10], ts[10:]
    both = load_scored([write(tmp_path / "c.jsonl", clean), write(tmp_path / "s.jsonl", stego)])
    assert len(both.transcripts) == 20 and set(both.labels()) == {0, 1}


def test_bad_report_input_gives_clear_errors(tmp_path):
    ts = scored_transcripts(6, 6, detectors=("a", "b"))
    with pytest.raises(ReportInputError, match="only clean|all 6 transcripts are clean"):
        load_scored([write(tmp_path / "clean.jsonl", ts[:6])])
    partial = [Transcript(**{**vars(t), "scores": {"a": 0.0}}) if t.id == "stego-3" else t
               for t in ts]
    with pytest.raises(ReportInputError, match=r"missing.jsonl:10: scores.b: missing on 1 of 12"):
        load_scored([write(tmp_path / "missing.jsonl", partial)])
    with pytest.raises(ReportInputError, match="share 8 transcript ids but not all"):
        load_scored([write(tmp_path / "x.jsonl", ts[:10]), write(tmp_path / "y.jsonl", ts[2:])])
    changed = [Transcript(**{**vars(t), "text": "other"}) if t.id == "clean-1" else t for t in ts]
    with pytest.raises(ReportInputError, match=r"z.jsonl:2: text: differs from .*w.jsonl:2"):
        load_scored([write(tmp_path / "w.jsonl", ts), write(tmp_path / "z.jsonl", changed)])
    unlabelled = [Transcript(**{**vars(t), "label": None, "payload": None}) for t in ts]
    with pytest.raises(ReportInputError, match="label: missing on 12"):
        load_scored([write(tmp_path / "u.jsonl", unlabelled)])
    nan_file = tmp_path / "nan.jsonl"
    lines = [json.dumps(t.to_dict()) for t in ts]
    lines[4] = lines[4].replace(str(ts[4].scores["a"]), "NaN")
    lines[7] = lines[7].replace(str(ts[7].scores["b"]), "Infinity")
    nan_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(TranscriptError, match=r"nan.jsonl:5: scores.a: is nan") as err:
        load_scored([nan_file])
    assert "nan.jsonl:8: scores.b: is inf" in str(err.value)


# -------------------------------------------------------------------------------- report


def test_report_folder_holds_page_metrics_and_figures_with_exact_numbers(tmp_path):
    ts = scored_transcripts()
    path = write(tmp_path / "scored.jsonl", ts)
    out = build_report([path], tmp_path / "report", n_boot=200, seed=5)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["auroc_per_source.png", "capacity.png", "metrics.json", "report.html", "roc.png"]
    metrics = json.loads((out / "metrics.json").read_text())
    labels = np.array([t.label for t in ts])
    for det in ("loglik", "probe"):
        scores = np.array([t.scores[det] for t in ts])
        assert metrics["detectors"][det] == detector_metrics(labels, scores, n_boot=200, seed=5,
                                                             what="x")
    huffman = metrics["sources"]["huffman"]
    assert huffman["n"] == 60 and huffman["bits_per_token"] == pytest.approx(2.0)
    assert set(metrics["bands"]) == {"[0.5, 1)", "[2, 4)"}
    assert metrics["n"] == {"total": 240, "clean": 120, "payload": 120}
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert f"{metrics['detectors']['probe']['auroc']:.3f}" in page
    probe = metrics["detectors"]["probe"]  # the control literature's names for the same points
    assert probe["catch_rate_at_audit_budget"] == {k: v["tpr"] for k, v in probe["tpr_at_fpr"].items()}
    assert "catch rate @ 1% audit budget" in page and "audit budget" in page
    assert "&lt;script&gt;document.documentElement" in page  # the transcript's script, escaped
    assert INJECTED not in page


def test_a_failed_report_leaves_the_previous_one_untouched(tmp_path):
    good = write(tmp_path / "good.jsonl", scored_transcripts(20, 20))
    out = build_report([good], tmp_path / "report", n_boot=50)
    before = (out / "metrics.json").read_bytes()
    bad = write(tmp_path / "bad.jsonl", scored_transcripts(20, 0))
    with pytest.raises(ReportInputError):
        build_report([bad], tmp_path / "report", n_boot=50)
    assert (out / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "good.jsonl", "report"]


def test_compare_sets_two_runs_side_by_side(tmp_path):
    first = build_report([write(tmp_path / "a.jsonl", scored_transcripts(seed=1))],
                         tmp_path / "first", n_boot=50)
    second = build_report([write(tmp_path / "b.jsonl", scored_transcripts(seed=2))],
                          tmp_path / "second", n_boot=50, compare=first / "metrics.json")
    this = json.loads((second / "metrics.json").read_text())
    other = json.loads((first / "metrics.json").read_text())
    row = next(r for r in this["compare"]["rows"] if r["detector"] == "probe")
    assert row["auroc_delta"] == pytest.approx(this["detectors"]["probe"]["auroc"]
                                               - other["detectors"]["probe"]["auroc"])
    assert "Compared with" in (second / "report.html").read_text()


def test_cli_report_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    bad = write(tmp_path / "one-class.jsonl", scored_transcripts(10, 0))
    assert cli_main(["report", bad, "--out", str(tmp_path / "r")]) == 2
    assert "a ROC needs both classes" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    good = write(tmp_path / "good.jsonl", scored_transcripts(20, 20))
    assert cli_main(["report", good, "--out", str(tmp_path / "r"), "--n-bootstrap", "50"]) == 0
    assert (tmp_path / "r" / "report.html").is_file()


# ---------------------------------------------------------------------- headless browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-quic"]


def chromium(*args, profile, timeout=120):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is needed for this test; `make test` installs it"
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=timeout, check=True)


def test_report_renders_in_headless_chromium_with_figures_and_no_script_errors(tmp_path):
    out = build_report([write(tmp_path / "s.jsonl", scored_transcripts())], tmp_path / "report",
                       n_boot=100)
    url = (out / "report.html").resolve().as_uri()
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", url, profile=tmp_path / "p1").stdout
    root = dom[dom.index("<html"):dom.index(">", dom.index("<html"))]
    assert 'data-loaded="yes"' in root, root
    assert 'data-images="3/3"' in root, root  # every figure decoded
    assert 'data-errors="0"' in root, root
    assert "data-pwned" not in root  # the transcript's <script> stayed text: it never ran
    assert "&lt;script&gt;document.documentElement" in dom
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,2400", url, profile=tmp_path / "p2")
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels[..., :3].std() > 0.05  # not a blank page
