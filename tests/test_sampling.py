import json

import pytest
import torch

from latentcode.cli import main
from latentcode.generation import AncestralSampler, decode_loop, nucleus_probs
from latentcode.prompts import Prompt
from latentcode.sampling import assign_prompts, sample_clean

PROMPTS = [Prompt(f"p{i}", text, "test") for i, text in enumerate([
    "Write a short review of a coffee shop.",
    "Explain to a child why leaves change colour in autumn, in a few friendly sentences.",
    "Describe a rainy afternoon.",
    "Write an email to a colleague asking to move our Tuesday meeting to Thursday morning.",
    "Tell a story about a cat who learns to swim.",
])]


def test_same_seed_same_text_different_seed_different_text(tiny):
    a = sample_clean(tiny, PROMPTS, 6, max_new_tokens=12, seed=3, batch_size=4, progress=False)
    b = sample_clean(tiny, PROMPTS, 6, max_new_tokens=12, seed=3, batch_size=4, progress=False)
    c = sample_clean(tiny, PROMPTS, 6, max_new_tokens=12, seed=4, batch_size=4, progress=False)
    assert [t.text for t in a] == [t.text for t in b]
    assert [t.text for t in a] != [t.text for t in c]


def test_clean_transcripts_record_how_they_were_made(tiny):
    ts = sample_clean(tiny, PROMPTS, 7, max_new_tokens=10, temperature=0.8, top_p=0.9, seed=0,
                      progress=False)
    assert len({t.id for t in ts}) == 7
    assert {t.meta["prompt_id"] for t in ts} == {p.id for p in PROMPTS}
    for t in ts:
        assert t.label == 0 and t.payload is None and t.source == "clean" and t.text.strip()
        assert t.meta["temperature"] == 0.8 and t.meta["top_p"] == 0.9 and t.meta["seed"] == 0
        assert 4 <= t.meta["n_tokens"] <= 10 and t.meta["model"] == tiny.name


def test_prompt_assignment_is_a_seeded_cycle():
    chosen = assign_prompts(PROMPTS, 12, seed=0)
    assert {p.id for p in chosen[:5]} == {p.id for p in PROMPTS}
    assert chosen[5:10] == chosen[:5]
    assert chosen == assign_prompts(PROMPTS, 12, seed=0) != assign_prompts(PROMPTS, 12, seed=1)


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    probs = nucleus_probs(logits, 1.0, 0.8)
    assert torch.allclose(probs, torch.tensor([[0.5 / 0.8, 0.3 / 0.8, 0, 0]], dtype=probs.dtype))
    probs = nucleus_probs(logits, 1.0, 0.81)
    assert (probs > 0).sum() == 3
    assert torch.allclose(nucleus_probs(logits, 1.0, 1.0).float(), torch.exp(logits))


def test_sampler_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1, 0.0]]))
    sampler = AncestralSampler(seed=0)
    draws = [sampler(logits, [0], step)[0] for step in range(4000)]
    freq = [draws.count(k) / len(draws) for k in range(4)]
    assert abs(freq[0] - 0.7) < 0.03 and abs(freq[1] - 0.2) < 0.03 and freq[3] == 0


def test_min_new_tokens_forbids_early_stop(tiny):
    stop = tiny.stop_ids[0]

    def always_stop(logits, rows, step):
        return [int(logits[i].argmax()) if step < 3 else stop for i in range(len(rows))]

    gens = decode_loop(tiny, tiny.prompt_ids(["hi", "a longer prompt here"]), always_stop,
                       max_new_tokens=10, min_new_tokens=3)
    assert all(len(g.tokens) == 3 and g.finished for g in gens)
    assert all(stop not in g.tokens for g in gens)


@pytest.mark.embedded
def test_batched_greedy_matches_transformers_generate(embedded):
    """The KV-cached, left-padded loop reproduces HF generate on each prompt alone."""
    texts = [p.prompt for p in PROMPTS[:3]]
    ids = embedded.prompt_ids(texts)
    ours = decode_loop(embedded, ids, lambda logits, rows, step: logits.argmax(-1).tolist(),
                       max_new_tokens=16, batch_size=3)
    for row, gen in zip(ids, ours):
        x = torch.tensor([row])
        with torch.inference_mode():
            ref = embedded.model.generate(x, max_new_tokens=16, do_sample=False,
                                          pad_token_id=embedded.tokenizer.pad_token_id)
        ref_tokens = [t for t in ref[0, x.shape[1]:].tolist() if t not in embedded.stop_ids]
        assert gen.tokens == ref_tokens


@pytest.mark.embedded
def test_sample_command_is_deterministic(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": p.id, "prompt": p.prompt}) for p in PROMPTS))
    args = ["sample", "--prompts", str(prompts), "--n", "4", "--max-new-tokens", "12",
            "--seed", "7", "--quiet", "--batch-size", "2"]
    assert main(args + ["--out", str(tmp_path / "a.jsonl")]) == 0
    assert main(args + ["--out", str(tmp_path / "b.jsonl")]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["label"] == 0 for r in rows)
    assert "tokens/s" in capsys.readouterr().out


@pytest.mark.embedded
def test_sample_command_halves_are_disjoint_in_prompts_and_ids(tmp_path, capsys):
    from latentcode.prompts import split_by_prompt

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": p.id, "prompt": p.prompt}) for p in PROMPTS))
    rows = {}
    for half in ("train", "test"):
        out = tmp_path / f"{half}.jsonl"
        assert main(["sample", "--prompts", str(prompts), "--n", "3", "--max-new-tokens", "4",
                     "--quiet", "--half", half, "--split-seed", "5", "--out", str(out)]) == 0
        rows[half] = [json.loads(line) for line in out.read_text().splitlines()]
        expected = {p.prompt for p in split_by_prompt(PROMPTS, seed=5)[half]}
        assert {r["prompt"] for r in rows[half]} <= expected
    assert not {r["prompt"] for r in rows["train"]} & {r["prompt"] for r in rows["test"]}
    assert not {r["id"] for r in rows["train"]} & {r["id"] for r in rows["test"]}
    assert rows["train"][0]["id"] == "clean-train-s0-00000"


def test_sample_command_rejects_bad_prompts_before_writing(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": ""}\nnot json\n')
    out = tmp_path / "out.jsonl"
    assert main(["sample", "--prompts", str(prompts), "--n", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{prompts}:2: prompt:" in err and f"{prompts}:3: (line):" in err
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("--n", "0"), ("--top-p", "0"), ("--top-p", "1.5"),
                                         ("--temperature", "-1"), ("--max-new-tokens", "0")])
def test_sample_command_rejects_bad_options(tmp_path, flag, value, capsys):
    assert main(["sample", "--out", str(tmp_path / "o.jsonl"), flag, value]) == 2
    assert flag in capsys.readouterr().err
