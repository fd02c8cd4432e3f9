"""Any causal LM can be a sender: LoRA targets follow the architecture (GPT-2's ``c_attn``,
GPT-NeoX's ``query_key_value``), tried on tiny random models saved as local folders, the way a
new user would pass ``--set sender.model=DIR``."""

from __future__ import annotations

import json

import pytest
import torch

from latentcode.channel.config import load_config
from latentcode.channel.lora import lora_targets
from latentcode.channel.sender import Sender
from latentcode.channel.trainer import train
from latentcode.lm import load_lm, load_tokenizer


def _tiny_folder(arch: str, folder):
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    tok = load_tokenizer()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    ids = {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
           "eos_token_id": tok.eos_token_id}
    torch.manual_seed(0)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=1024,
                                           **ids))
    else:
        model = GPTNeoXForCausalLM(GPTNeoXConfig(hidden_size=64, num_hidden_layers=2,
                                                 num_attention_heads=4, intermediate_size=128,
                                                 max_position_embeddings=1024, **ids))
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("arch,expected", [("gpt2", ["c_attn"]),
                                           ("gpt_neox", ["query_key_value"])])
def test_training_runs_on_a_non_llama_model_with_its_own_lora_targets(arch, expected, tmp_path):
    folder = _tiny_folder(arch, tmp_path / arch)
    cfg = load_config(None, {"sender.model": str(folder), "rl.steps": 1,
                             "rl.prompts_per_step": 2, "rl.group_size": 2,
                             "sender.max_new_tokens": 8, "eval.every": 1, "eval.prompts": 4,
                             "reward.overseers": ["string-match"], "measure.enabled": False})
    summary = train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    assert summary["steps_done"] == 1 and summary["final_eval"]["n"] == 4
    adapter = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == expected
    assert adapter["fan_in_fan_out"] == (arch == "gpt2")  # GPT-2's Conv1D stores weights transposed
    # the trained adapter loads back onto the base model and changes its output
    sender = Sender.load(load_lm(str(folder)), tmp_path / "run" / "adapter")
    ids = torch.tensor([sender.lm.prompt_ids(["Hi"])[0]])
    with torch.inference_mode():
        tuned = sender.model(input_ids=ids).logits
        with sender.reference():
            base = sender.model(input_ids=ids).logits
    assert not torch.equal(tuned, base)


def test_unknown_lora_targets_name_the_layers_that_exist(tmp_path):
    lm = load_lm(str(_tiny_folder("gpt2", tmp_path / "gpt2")))
    with pytest.raises(ValueError, match=r"\['q_proj', 'v_proj'\].*c_attn.*leave lora_targets"):
        lora_targets(lm.model, ["q_proj", "v_proj"])
    assert lora_targets(lm.model, ["c_attn", "c_proj"]) == ["c_attn", "c_proj"]
    assert lora_targets(lm.model) == ["c_attn"]


def test_an_architecture_peft_does_not_know_gets_every_linear_layer():
    from latentcode.lm import tiny_lm

    lm = tiny_lm(seed=0)
    assert lora_targets(lm.model) == ["q_proj", "v_proj"]  # peft's default for Llama
    lm.model.config.model_type = "somebody-new"
    assert lora_targets(lm.model) == "all-linear"
    sender = Sender(lm)  # and peft wraps every linear layer but the output head
    wrapped = {name.split(".lora_A")[0].rsplit(".", 1)[-1]
               for name, _ in sender.model.named_parameters() if ".lora_A" in name}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                       "down_proj"}
