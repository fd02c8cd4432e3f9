"""``--engine ray``: the same scores and texts as the local engine, on a local Ray cluster and on
a two-node cluster started with ``ray start`` on this machine."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentcode.cli import main
from latentcode.prompts import Prompt
from latentcode.transcripts import read_transcripts, write_transcripts

ray = pytest.importorskip("ray", reason="latentcode[scale] is installed by make")

PROMPTS = [Prompt(f"p{i}", f"Tell me about item {i}.") for i in range(50)]
DETECTORS = "distribution,tail,tfidf"  # LM statistics, a z-scored test, a supervised classifier


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    from latentcode.lm import tiny_lm

    lm = tiny_lm(seed=0)
    folder = tmp_path_factory.mktemp("ray") / "tiny-model"
    lm.model.save_pretrained(folder, safe_serialization=True)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def files(model_folder, tmp_path_factory):
    """A labelled training set and 300 transcripts to score, from the tiny model: clean text
    at temperature 1 and 'suspicious' text at temperature 2."""
    from latentcode.lm import load_lm
    from latentcode.sampling import sample_clean

    lm = load_lm(str(model_folder))
    root = tmp_path_factory.mktemp("ray-files")

    def draw(n, seed, temperature, label, prefix):
        out = sample_clean(lm, PROMPTS, n, max_new_tokens=12, seed=seed, temperature=temperature,
                           progress=False, id_prefix=prefix)
        for t in out:
            t.label = label
        return out

    write_transcripts(root / "train.jsonl", draw(40, 1, 1.0, 0, "tc") + draw(40, 2, 2.0, 1, "th"))
    write_transcripts(root / "test.jsonl", draw(150, 3, 1.0, 0, "c") + draw(150, 4, 2.0, 1, "h"))
    return root


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster of this process (2 CPUs), shut down after the module."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _detect(files, model_folder, out, *extra):
    return main(["detect", str(files / "test.jsonl"), "--detectors", DETECTORS, "--train",
                 str(files / "train.jsonl"), "--model", str(model_folder), "--out", str(out),
                 *extra])


def _same_scores(a_path, b_path):
    a, b = read_transcripts(a_path), read_transcripts(b_path)
    assert [t.id for t in a] == [t.id for t in b]  # input order, every transcript
    for name in DETECTORS.split(","):
        x = np.array([t.scores[name] for t in a])
        y = np.array([t.scores[name] for t in b])
        assert np.abs(x - y).max() <= 1e-6, name
    return a


@pytest.fixture(scope="module")
def local_run(files, model_folder, tmp_path_factory):
    """The local engine's scores and its fitted detectors (``--save``), which every Ray run is
    compared against: computed once for the module."""
    root = tmp_path_factory.mktemp("ray-local")
    assert _detect(files, model_folder, root / "local.jsonl", "--save", str(root / "fitted")) == 0
    return root


def test_ray_detection_equals_the_local_engine(files, model_folder, local_run, local_ray,
                                               tmp_path):
    assert _detect(files, model_folder, tmp_path / "ray.jsonl", "--engine", "ray",
                   "--actors", "2", "--batch-size", "32") == 0
    scored = _same_scores(local_run / "local.jsonl", tmp_path / "ray.jsonl")
    assert len(scored) == 300
    config = json.loads((tmp_path / "ray.jsonl.config.json").read_text())
    assert config["engine"] == "ray" and config["actors"] == 2 and config["ray_nodes"] == 1
    # fitted detectors loaded from --load score the same on ray
    assert main(["detect", str(files / "test.jsonl"), "--detectors", DETECTORS, "--load",
                 str(local_run / "fitted"), "--model", str(model_folder), "--engine", "ray",
                 "--actors", "1", "--out", str(tmp_path / "loaded.jsonl")]) == 0
    _same_scores(local_run / "local.jsonl", tmp_path / "loaded.jsonl")


def test_ray_generation_equals_the_local_engine(model_folder, local_ray, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(p.prompt for p in PROMPTS) + "\n")
    key = tmp_path / "key"
    key.write_bytes(b"secret")
    common = ["--prompts", str(prompts), "--model", str(model_folder), "--max-new-tokens", "10",
              "--batch-size", "8", "--quiet"]
    for job in (["sample", "--n", "40"],
                ["encode", "--codec", "huffman", "--n", "24", "--payload-bits", "4",
                 "--key-file", str(key), "--allow-partial"]):
        assert main(job + common + ["--out", str(tmp_path / "local.jsonl")]) == 0
        assert main(job + common + ["--engine", "ray", "--actors", "2",
                                    "--out", str(tmp_path / "ray.jsonl")]) == 0
        local, remote = read_transcripts(tmp_path / "local.jsonl"), read_transcripts(
            tmp_path / "ray.jsonl")
        assert [(t.id, t.prompt, t.text, t.payload) for t in remote] == [
            (t.id, t.prompt, t.text, t.payload) for t in local], job[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_started_with_ray_start_share_one_job(files, model_folder, local_run,
                                                       tmp_path):
    """A head node and a second node on localhost, one CPU each: two actors of one CPU must
    land on both nodes, and the scores still equal the local engine's."""
    if ray.is_initialized():
        ray.shutdown()
    cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_ADDRESS": address}
    try:
        subprocess.run([cli, "start", "--head", f"--port={port}", "--num-cpus=1",
                        "--include-dashboard=false", "--disable-usage-stats"],
                       check=True, capture_output=True, env={**os.environ})
        subprocess.run([cli, "start", f"--address={address}", "--num-cpus=1",
                        "--disable-usage-stats"], check=True, capture_output=True,
                       env={**os.environ})
        run = subprocess.run(
            [sys.executable, "-m", "latentcode", "detect", str(files / "test.jsonl"),
             "--detectors", DETECTORS, "--train", str(files / "train.jsonl"), "--model",
             str(model_folder), "--engine", "ray", "--actors", "2", "--batch-size", "32",
             "--out", str(tmp_path / "two.jsonl")], capture_output=True, text=True, env=env,
            timeout=300, check=False)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "ray cluster: 2 node(s), 2 CPUs" in run.stdout
    finally:
        subprocess.run([cli, "stop", "--force"], capture_output=True, check=False)
    config = json.loads((tmp_path / "two.jsonl.config.json").read_text())
    assert config["ray_nodes"] == 2
    _same_scores(local_run / "local.jsonl", tmp_path / "two.jsonl")
