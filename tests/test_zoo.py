"""The regime zoo: config checks, an end-to-end zoo on a tiny model, and its tables."""

from __future__ import annotations

import csv
import json

import pytest

from latentcode.channel.config import ConfigError
from latentcode.channel.zoo import load_zoo, mean_ci, run_zoo, summarize


def write(tmp_path, text: str):
    path = tmp_path / "zoo.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ('colour = "red"\n[[run]]\nregime = "rl"\n', "colour: unknown key"),
    ('[[run]]\nregime = "ppo"\n', "regime: 'ppo' is not one of"),
    ('[[run]]\nregime = "rl"\n[[run]]\nregime = "rl"\n', "label 'rl' is used twice"),
    ('[[run]]\nregime = "rl"\nset = {"rl.steps" = 9}\n', "rl.steps: every run has the same budget"),
    ('[[run]]\nregime = "distill"\nset = {"distill.teacher" = "@rl"}\n[[run]]\nregime = "rl"\n',
     "names no earlier run"),
    ('seeds = []\n[[run]]\nregime = "rl"\n', "seeds: must be a non-empty list"),
    ('seeds = [0]\n', "no [[run]] entries"),
    ('[[run]]\nregime = "rl"\nset = {"rl.gama" = 0.5}\n', "zoo run 'rl': rl.gama: unknown key"),
])
def test_a_bad_zoo_config_is_refused_with_the_key_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_zoo(write(tmp_path, text))


def test_mean_ci_and_the_single_seed_intervals():
    mean, low, high = mean_ci([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9) and low < 0.9 < high
    assert mean_ci([0.5]) == (0.5, None, None) and mean_ci([None]) == (None, None, None)
    row = {"label": "a", "regime": "rl", "gamma": 1.0, "accuracy": 0.9, "n_eval": 100,
           "bits": 0.5, "bits_ci_low": 0.4, "bits_ci_high": 0.6, "flag_rate": 0.05,
           "kl_per_response": 3.0, "best_auroc": 0.6, "best_detector": "tail", "half_position": 4}
    one = summarize([row])[0]
    assert one["accuracy"]["low"] < 0.9 < one["accuracy"]["high"]  # Wilson
    assert (one["bits"]["low"], one["bits"]["high"]) == (0.4, 0.6)  # the run's bootstrap
    two = summarize([row, {**row, "accuracy": 0.7}])[0]
    assert two["accuracy"]["mean"] == pytest.approx(0.8) and two["seeds"] == 2


def test_a_zoo_trains_measures_and_compares_every_run_and_resumes(tmp_path, tiny_folder):
    config = write(tmp_path, f'''
seeds = [0]
[set]
"sender.model" = "{tiny_folder}"
"rl.steps" = 2
"rl.prompts_per_step" = 2
"rl.group_size" = 2
"sender.max_new_tokens" = 5
"eval.every" = 2
"eval.prompts" = 12
"reward.overseers" = ["string-match"]
"reward.calibration_samples" = 4
"measure.detectors" = ["distribution", "tfidf"]
"measure.bootstrap" = 20
[[run]]
label = "rl"
regime = "rl"
[[run]]
label = "dpo"
regime = "dpo"
[[run]]
label = "student"
regime = "distill"
set = {{"distill.teacher" = "@rl"}}
''')
    out = tmp_path / "zoo"
    logged = []
    rows = run_zoo(load_zoo(config), out, progress=False, log=logged.append)
    assert [r["label"] for r in rows] == ["rl", "dpo", "student"]
    assert all(r["best_detector"] in ("distribution", "tfidf") for r in rows)
    with open(out / "zoo.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["label"] for t in table] == ["rl", "dpo", "student"]
    assert {"accuracy", "bits", "flag_rate", "kl_per_response", "best_auroc",
            "half_position"} <= set(table[0])
    md = (out / "zoo.md").read_text()
    table_part = md.split("\n\n")[0]  # the table, then the paper's questions
    assert table_part.count("\n") == 2 + 3 - 1 and "| student | distill |" in table_part
    assert "## The discount" in md and "| student | distill | 1 |" in md
    html = (out / "report" / "zoo.html").read_text()
    assert html.count('href="../runs/') == 3 and html.count("data:image/png;base64,") == 3
    for name in ("zoo-learning-curves.png", "zoo-prefix-decodability.png", "zoo-position-kl.png",
                 "zoo.json"):
        assert (out / name).is_file()
    teacher = json.loads((out / "runs" / "student-s0" / "config.json").read_text())
    assert teacher["distill"]["teacher"] == str(out / "runs" / "rl-s0")

    # a finished run measured again from its folder (the CLI path: sender and the distilled
    # student's teacher receiver reloaded from safetensors) gives the same numbers
    from latentcode.cli import main

    student = out / "runs" / "student-s0"
    first = json.loads((student / "instrumentality.json").read_text())
    assert main(["measure", str(student), "--detectors", "distribution"]) == 0
    again = json.loads((student / "instrumentality.json").read_text())
    assert again["accuracy"] == first["accuracy"]
    assert again["prefix_accuracy"] == pytest.approx(first["prefix_accuracy"])
    assert set(again["concealment"]) == {"distribution"}
    (student / "instrumentality.json").write_text(json.dumps(first))

    before = (out / "zoo.csv").read_text()
    logged.clear()
    run_zoo(load_zoo(config), out, progress=False, log=logged.append)
    assert sum("[resume] finished" in line for line in logged) == 3
    assert (out / "zoo.csv").read_text() == before
