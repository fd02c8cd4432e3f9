"""``accelerate launch --num_processes 2 -m latentcode train``: the same run as one process.

Each process samples, scores and back-propagates its share of the step's episodes and the
gradients are averaged (gloo on CPU), so with the same seed and global batch the per-step
metrics and the trained adapter must match a single-process run. What can differ is float
rounding: the two processes run smaller batches (other padding) and sum gradients in another
order. The stated tolerance: every per-step metric within 1e-4 (absolute), the adapter weights
within 1e-5.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("accelerate")

TOLERANCE_METRICS = 1e-4
TOLERANCE_WEIGHTS = 1e-5
SETTINGS = {"rl.steps": 3, "rl.prompts_per_step": 4, "rl.group_size": 2,
            "sender.max_new_tokens": 6, "eval.every": 3, "eval.prompts": 4,
            "reward.overseers": ["string-match"], "rl.lr": 1e-2, "measure.enabled": False}
NOT_COMPARED = {"seconds", "tokens_per_s"}  # wall-clock


def _train(out, model_folder, launcher=()):
    sets = [f"--set={k}={json.dumps(v)}" for k, v in
            {**SETTINGS, "sender.model": str(model_folder)}.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([*launcher, "-m", "latentcode", "train", "--out", str(out), *sets],
                         capture_output=True, text=True, env=env, timeout=600,
                         check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return run.stdout


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_processes_train_the_same_run_as_one(tiny_folder, tmp_path):
    from safetensors.numpy import load_file

    _train(tmp_path / "one", tiny_folder, (sys.executable,))
    printed = _train(tmp_path / "two", tiny_folder,
                     (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                      "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                      "--dynamo_backend", "no"))  # --multi_gpu: torchrun's launcher, gloo on CPU
    assert printed.count("held-out accuracy") == 1  # only the main process reports
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["processes"] == 1
    one, two = _rows(tmp_path / "one" / "metrics.jsonl"), _rows(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in two] == [1, 2, 3]
    worst = 0.0
    for a, b in zip(one, two):
        assert set(a) == set(b)
        for key in set(a) - NOT_COMPARED:
            assert abs(a[key] - b[key]) <= TOLERANCE_METRICS, (a["step"], key, a[key], b[key])
            worst = max(worst, abs(a[key] - b[key]))
    print(f"largest per-step metric difference, 2 processes vs 1: {worst:.2e}")
    evals = [_rows(tmp_path / run / "eval.jsonl") for run in ("one", "two")]
    assert [e["accuracy"] for e in evals[0]] == [e["accuracy"] for e in evals[1]]
    w1 = load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "adapter" / "adapter_model.safetensors"))
    assert set(w1) == set(w2)
    weights = max(float(np.abs(w1[k] - w2[k]).max()) for k in w1)
    print(f"largest adapter weight difference: {weights:.2e}")
    assert weights <= TOLERANCE_WEIGHTS
    # equal because both trained alike, not because neither trained (LoRA B starts at zero)
    assert max(float(np.abs(w2[k]).max()) for k in w2 if "lora_B" in k) > 1e-3
    files = {p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*")
             if "tensorboard" not in p.parts}
    assert files == {p.relative_to(tmp_path / "two").as_posix()
                     for p in (tmp_path / "two").rglob("*") if "tensorboard" not in p.parts}
