"""``r1searcher export``: a run's adapter, config and logs as a small folder that loads anywhere."""

from __future__ import annotations

import json

import pytest
import torch

from r1searcher.cli import main
from r1searcher.config import ModelConfig
from r1searcher.models.loading import apply_lora, load_policy
from r1searcher.rl.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory, embedded_model_dir):
    """A demo-shaped folder whose stage-2 run holds a real SmolLM2 LoRA checkpoint (non-zero B)."""
    from r1searcher.models.loading import load_tokenizer

    root = tmp_path_factory.mktemp("demo")
    model, _ = load_policy(ModelConfig(name="smollm2", dtype="float32"))
    model = apply_lora(model, r=4, alpha=8)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    run = root / "stage2"
    save_checkpoint(run, 3, model=model, optimizer=opt, scheduler=sched, state={"sampler": {}},
                    config_yaml="model:\n  name: smollm2\n", tokenizer=load_tokenizer(embedded_model_dir))
    (run / "config.yaml").write_text("model:\n  name: smollm2\n")
    (run / "log.jsonl").write_text(json.dumps({"step": 3, "reward_mean": 0.5}) + "\n")
    (root / "metrics.json").write_text(json.dumps({"after": {"rl": {"f1": 40.0}}}))
    (root / "after" / "rl").mkdir(parents=True)
    (root / "after" / "rl" / "predictions.jsonl").write_text('{"id": "q1"}\n')
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = model(ids).logits
    return root, expected


def test_export_writes_a_portable_adapter_with_its_provenance(tmp_path, trained_demo, capsys):
    root, expected = trained_demo
    out = tmp_path / "checkpoints" / "tiny"
    assert main(["export", str(root), "--out", str(out), "--command", "r1searcher demo --seed 0"]) == 0
    assert "exported step 3" in capsys.readouterr().out
    made = json.loads((out / "made_by.json").read_text())
    assert made["step"] == 3 and made["command"] == "r1searcher demo --seed 0" and made["base_model"] == "smollm2"
    assert "torch_cpu_capability" in made["machine"] and made["bytes"] < 16 * 2**20
    assert set(made["files"]) == {"model/adapter_config.json", "model/adapter_model.safetensors", "config.yaml",
                                  "log.jsonl", "demo/metrics.json", "demo/after/rl/predictions.jsonl"}
    assert json.loads((out / "model" / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2"
    assert not (out / "model" / "tokenizer.json").exists()  # the base model's tokenizer is used
    loaded, tok = load_policy(ModelConfig(name=str(out), dtype="float32"))  # the folder itself, as `ask --model`
    with torch.no_grad():
        assert torch.allclose(loaded(torch.tensor([[1, 2, 3, 4]])).logits, expected, atol=1e-4)
    assert tok.pad_token is not None
    assert main(["export", str(root), "--out", str(out)]) == 0  # an earlier export is replaced


def test_export_never_replaces_a_folder_it_did_not_write(tmp_path, trained_demo, capsys):
    root, _ = trained_demo
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["export", str(root), "--out", str(mine)]) == 2
    assert "is not an exported searcher" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "neither a training run" in capsys.readouterr().err
