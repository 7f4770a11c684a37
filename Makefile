# make demo: set up .venv and run the main job on embedded data.  make test: the whole test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/classify/demo

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/foveal classify train data=digits model=simple_cnn name=demo exist_ok=true
	$(BIN)/foveal classify val weights=$(DEMO)/best.safetensors name=demo-val exist_ok=true
	$(BIN)/python examples/write_digit_images.py $(DEMO)/samples 8
	$(BIN)/foveal classify predict weights=$(DEMO)/best.safetensors source=$(DEMO)/samples topk=3 name=demo-predict exist_ok=true
	@echo "report: $(DEMO)/report.html"

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf $(VENV) runs *.egg-info
