# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv when missing and installs aelab into it with constraints.txt
# (torch==2.13.0: pip takes the CPU wheel that lies on this disk; no multi-GB CUDA download).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test venv bench clean browser

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/aelab demo --out demo-output

# The report test renders the demo's HTML in headless Chromium: Debian's package,
# installed here when missing (needs root; otherwise that one test says what to run).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || command -v google-chrome >/dev/null 2>&1 \
	  || (echo "installing Debian's chromium for the report test ..." \
	      && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; run: apt-get install -y chromium" >&2

test: $(STAMP) browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-output build *.egg-info src/*.egg-info
