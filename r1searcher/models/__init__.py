"""Loading policies (packaged GGUF → safetensors, HF folders, LoRA adapters) and the run-folder layout."""
