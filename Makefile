# The two README commands are `make demo` and `make test`; both install what they need
# into a local virtual environment (.venv) first, so a fresh machine needs only Python and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -e .
	touch $(STAMP)

install: $(STAMP)

## demo: build the documented 572 -> 388 U-Net and print its layer-by-layer shapes
demo: install
	$(PY) -c "import unet; m = unet.unet_model(); print(*unet.shape_trace(572), sep='\n'); print(m.output_shape, m.count_params())"

## test: unit tests
test: install
	$(PY) -m pytest tests
