import json
from collections import Counter

import pytest

from latentcode.jsonl import RecordError
from latentcode.prompts import DEFAULT_PROMPTS, read_prompts


def test_shipped_cover_prompts_are_varied_and_valid():
    prompts = read_prompts(DEFAULT_PROMPTS)
    assert len(prompts) >= 300
    assert len({p.prompt for p in prompts}) == len(prompts)
    categories = Counter(p.category for p in prompts)
    assert len(categories) >= 5 and min(categories.values()) >= 20
    lengths = [len(p.prompt.split()) for p in prompts]
    assert min(lengths) < 12 and max(lengths) > 30
    banned = ("secret", "hidden", "steganograph", "encrypt", "cipher")
    assert not [p.id for p in prompts if any(b in p.prompt.lower() for b in banned)]


def test_datasets_folder_never_shadows_hugging_face_datasets():
    assert not (DEFAULT_PROMPTS.parents[1] / "__init__.py").exists()


def test_prompt_files_in_jsonl_and_txt(tmp_path):
    (tmp_path / "p.txt").write_text("First prompt.\n\n  Second prompt.  \n")
    assert [p.prompt for p in read_prompts(tmp_path / "p.txt")] == ["First prompt.", "Second prompt."]
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "x", "category": "c"}) + "\n")
    (p,) = read_prompts(tmp_path / "p.jsonl")
    assert (p.id, p.category) == ("p-1", "c")


def test_bad_prompt_files_list_every_problem(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "ok"}\n{"id": "a", "prompt": "dup"}\n{"prompt": 3}\n')
    with pytest.raises(RecordError) as info:
        read_prompts(bad)
    assert [(e.line, e.field) for e in info.value.errors] == [(2, "id"), (3, "prompt")]
