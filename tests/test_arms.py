"""The arms race: config checks, two senders end to end on a tiny model, then resumed."""

from __future__ import annotations

import json

import pytest
from test_zoo import write  # a config file in tmp_path

from latentcode.channel.arms import load_arms, run_arms
from latentcode.channel.config import ConfigError

RUNS = '''
[[run]]
label = "tfidf"
set = { "reward.overseers" = ["string-match", { name = "tfidf", adaptive = true, every = 1 }] }
[[run]]
label = "control"
set = { "reward.overseers" = ["string-match"], "reward.null_channel" = true }
'''


@pytest.mark.parametrize("head, message", [
    ('control = "nobody"\n', "control: 'nobody' is not the label"),
    ('control = "tfidf"\n', "must set \"reward.null_channel\" = true"),
    ('detectors = ["tfidf", "nose"]\n', "detectors: unknown 'nose'"),
    ('paraphrase = "yes"\n', "paraphrase: must be true or false"),
])
def test_a_bad_arms_config_is_refused_with_the_key_named(tmp_path, head, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_arms(write(tmp_path, head + RUNS))


def test_an_arms_race_fills_its_matrices_and_resumes_without_retraining(tmp_path, tiny_folder,
                                                                        monkeypatch):
    config = write(tmp_path, f'''
seeds = [0]
control = "control"
paraphrase = true
detectors = ["tfidf", "format", "policy-probe"]
[set]
"sender.model" = "{tiny_folder}"
"rl.steps" = 2
"rl.prompts_per_step" = 2
"rl.group_size" = 2
"sender.max_new_tokens" = 5
"eval.every" = 2
"eval.prompts" = 16
"reward.overseer_weight" = 0.5
"reward.calibration_samples" = 6
"measure.bootstrap" = 20
''' + RUNS)
    arms = load_arms(config)
    assert arms.zoo.runs[0].regime == "rl"  # the default regime of an arm
    out = tmp_path / "arms"
    result = run_arms(arms, out, progress=False, log=lambda *_: None)
    ref, ctrl = result["matrix"]["vs_reference"], result["matrix"]["vs_control"]
    assert set(ref) == {"tfidf", "control"} and set(ctrl) == {"tfidf"}
    for row in (*ref.values(), *ctrl.values()):
        assert set(row) == {"tfidf", "format", "policy-probe"}
        assert all(0 <= c["low"] <= c["auroc"] <= c["high"] <= 1 for c in row.values())
    assert result["trained_against"] == {"tfidf": ["tfidf"], "control": []}
    para = result["cells"]["tfidf-s0"]["paraphrase"]
    assert para["n"] == 16 and 0 <= para["accuracy"] <= 1
    headline = result["headline"]
    assert [c["monitor"] for c in headline["trained_against_cells"]] == ["tfidf"]
    assert len(headline["frontier"]) == 2
    md = (out / "arms.md").read_text()
    assert "## AUROC against the null-channel control's answers" in md and "| control (control) |" in md
    html = (out / "report" / "arms.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert ("Best decoding-preserving" in html) == (headline["concealment"] is not None)
    for name in ("arms.png", "arms-vs-reference.png", "arms-vs-control.png", "arms.json", "cells.json"):
        assert (out / name).is_file(), name

    # resumed: nothing trains again, only a missing cell is measured
    from latentcode.channel import trainer

    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("trained again"))
    cells = json.loads((out / "cells.json").read_text())
    del cells["tfidf-s0"]["vs_control"]
    (out / "cells.json").write_text(json.dumps(cells))
    again = run_arms(load_arms(config), out, progress=False, log=lambda *_: None)
    assert set(again["matrix"]["vs_control"]["tfidf"]) == {"tfidf", "format", "policy-probe"}
    assert again["matrix"]["vs_reference"] == ref
