# The README's two commands are `make demo` and `make test`. Every target installs what it
# needs into a local virtual environment (.venv) first, so a fresh machine needs only
# Python >= 3.10 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
DATA   ?= data/spores
RUN    ?= runs/demo
FIELD  ?= $(DATA)/fields/images/field_000.png
# The versions the results were measured with; `make install CONSTRAINTS=` takes the newest.
CONSTRAINTS ?= constraints/measured.txt

.PHONY: help install demo test lowest docs notebooks figures data sample model export-check bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

$(STAMP): requirements.txt pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	touch $@

install: $(STAMP)  ## create .venv with the requirements and the package (editable)

data: $(DATA)/.complete  ## generate the synthetic spore data set into data/spores (~15 s)

$(DATA)/.complete: | $(STAMP)
	$(PY) -m unet generate-data $(DATA) --overwrite
	touch $@

sample: $(STAMP)  ## regenerate the small committed sample data/spores/sample
	$(PY) -m unet generate-data data/spores/sample --train 16 --val 4 --test 4 --fields 0 --seed 7 --overwrite

model: $(STAMP)  ## make the shipped model unet/models/spores/ (data seed 0, default training, scores, model card)
	$(PY) scripts/make_model.py --data $(DATA) --run runs/spores

export-check:  ## install the `export` extra into .venv-export, export the shipped model, validate it offline
	$(PYTHON) -m venv .venv-export
	.venv-export/bin/pip install --quiet --upgrade pip
	.venv-export/bin/pip install --quiet -e ".[tensorflow,export]" $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	$(if $(shell unshare -n true 2>/dev/null && echo y),unshare -n) .venv-export/bin/python benchmarks/export_check.py

$(RUN)/.trained: $(DATA)/.complete
	$(PY) -m unet train --data $(DATA) --out $(RUN)
	touch $@

demo: $(RUN)/.trained  ## data -> train -> evaluate -> predict + count a field -> runs/demo/report.md
	$(PY) -m unet evaluate --model $(RUN) --data $(DATA)/test --json > $(RUN)/test.json
	$(PY) -m unet evaluate --model $(RUN) --data $(DATA)/fields --json > $(RUN)/fields.json
	$(PY) -m unet predict --model $(RUN) $(FIELD) --out $(RUN)/predict --overwrite
	$(PY) scripts/demo_report.py --run $(RUN) --data $(DATA)

test: $(STAMP)  ## unit tests + every notebook under nbval in quick mode
	UNET_QUICK=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env

notebooks: $(STAMP) $(DATA)/.complete  ## execute every notebook in full mode, outputs saved in place
	cd notebooks && for nb in [0-9][0-9]_*.ipynb; do \
		echo "== $$nb"; \
		../$(PY) -m jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=7200 "$$nb" || exit 1; \
	done

lowest:  ## install beside tensorflow-cpu at the lowest supported versions, check pip changes nothing, run the tests there
	bash scripts/check_lowest.sh

docs: $(STAMP)  ## API reference from the docstrings into docs/api (pdoc)
	$(BIN)/pip install --quiet "pdoc>=14"
	$(PY) -m pdoc unet -o docs/api --docformat numpy
	@echo "API reference: docs/api/index.html"

figures: $(STAMP)  ## redraw markdown images/ (result figures need `make demo` first)
	$(PY) scripts/make_figures.py

bench: $(STAMP) $(DATA)/.complete  ## run the benchmarks (prints the table, JSON in benchmarks/results/)
	$(PY) benchmarks/run_all.py

clean:  ## remove generated data, runs and caches (keeps .venv and the committed sample)
	rm -rf $(DATA)/train $(DATA)/val $(DATA)/test $(DATA)/fields $(DATA)/.complete runs benchmarks/results docs/api .venv-lowest .venv-export
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
