# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint validate lab bench clean lock

# the pinned set (requirements-lock.txt, compiled from pyproject.toml), then the project itself
$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-lock.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	# strip notebook outputs on commit (a git filter in this clone's .git/config)
	-git rev-parse --git-dir >/dev/null 2>&1 && \
	  git config filter.nbstripout.clean "$(CURDIR)/$(BIN)/nbstripout" && \
	  git config filter.nbstripout.smudge cat
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/alliance-meta run

# the whole suite: lint, unit/reference/pipeline/browser tests, and the notebooks through nbval
test: $(STAMP)
	$(BIN)/ruff check alliance_meta tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider

validate: $(STAMP)
	$(BIN)/alliance-meta validate

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# re-pin after changing dependencies in pyproject.toml (uv, run from a throw-away venv)
lock:
	$(PY) -m venv /tmp/alliance-meta-uv && /tmp/alliance-meta-uv/bin/pip install --quiet uv
	/tmp/alliance-meta-uv/bin/uv pip compile pyproject.toml --extra test --extra dev \
	  --universal --python-version 3.10 -o requirements-lock.txt

clean:
	rm -rf $(VENV) .pytest_cache
