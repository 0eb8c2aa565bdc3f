"""A LoRA adapter saved on one machine loads on another: its base is named by the saving
machine's cache folder (``base_model_name_or_path``), which the loading machine maps to the
embedded model of that folder (a committed ``checkpoints/`` adapter on a fresh clone)."""

from __future__ import annotations

import json

import pytest
import torch

from r1searcher.config import ModelConfig
from r1searcher.models.loading import adapter_base, apply_lora, load_policy


def test_adapter_base_maps_a_foreign_cache_folder_to_the_embedded_name(tmp_path):
    assert adapter_base("/home/someone/.cache/r1searcher/models/qwen2.5-coder-0.5b-instruct") == "qwen-coder-0.5b"
    assert adapter_base("smollm2") == "smollm2"
    assert adapter_base(str(tmp_path)) == str(tmp_path)  # a folder that exists here stays
    assert adapter_base("/nowhere/some-other-model") == "/nowhere/some-other-model"  # load reports it
    with pytest.raises(ValueError, match="does not name its base model"):
        adapter_base(None)


def test_an_adapter_saved_elsewhere_loads_with_its_weights(tmp_path, embedded_model_dir):
    model, _ = load_policy(ModelConfig(name="smollm2", dtype="float32"))
    model = apply_lora(model, r=4, alpha=8)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)  # a non-trivial adapter
    folder = tmp_path / "adapter"
    model.save_pretrained(folder)
    cfg_path = folder / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = "/another/machine/.cache/r1searcher/models/" + embedded_model_dir.name
    cfg_path.write_text(json.dumps(cfg))
    from r1searcher.models.loading import load_tokenizer

    load_tokenizer(embedded_model_dir).save_pretrained(folder)
    loaded, _ = load_policy(ModelConfig(name=str(folder), dtype="float32"))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-4)
