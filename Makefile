# Two commands do everything on a fresh machine:
#   make demo   -- set up the environment and run the demo (daskcal demo: simulated LOFAR
#                  calibrator + target through lofar-calibrator -> lofar-target -> lofar-facet)
#   make test   -- set up the environment and run lint + the full test-suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/daskcal demo --output demo-output

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

# As root (CI, a test machine) the tests first start a real single-node SLURM and install
# headless Chromium and PostgreSQL from Debian's packages, and then require them; otherwise those tests skip
# with the reason.
test: lint
	@if [ "$$(id -u)" = 0 ]; then bash deploy/test-prerequisites.sh; fi
	@if [ "$$(id -u)" = 0 ]; then export DASKCAL_REQUIRE_SLURM=1 DASKCAL_REQUIRE_BROWSER=1 DASKCAL_REQUIRE_POSTGRES=1; fi; \
		$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-output .pytest_cache
