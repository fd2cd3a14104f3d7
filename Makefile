# Set-up is two commands: `make run` and `make test`. Everything else here serves those two.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=
# What `make install` puts in the venv: the dev requirements (tests, tooling) by default; the
# production images install with REQUIREMENTS=requirements/base.txt (docker/Dockerfile).
REQUIREMENTS ?= requirements/dev.txt

.PHONY: run test install install-gpu install-anvil install-browser install-deploy-tools requirements migrate clean
VYPER_VENV := .venv-vyper
ANVIL := .tools/node_modules/.bin/anvil

$(VENV)/.installed: $(REQUIREMENTS) requirements/base.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS)
	touch $@

$(VYPER_VENV)/.installed: requirements/vyper.txt
	$(PYTHON) -m venv $(VYPER_VENV)
	$(VYPER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/vyper.txt
	touch $@

install: $(VENV)/.installed $(VYPER_VENV)/.installed

## anvil, the EVM node the chain tests run against (from npm; skipped with a note when npm is missing).
install-anvil:
	@if command -v npm >/dev/null; then npm install --silent --no-save --no-audit --no-fund --prefix .tools @foundry-rs/anvil@1.7.1; \
	else echo "npm not found: the anvil chain tests will be skipped"; fi

## Headless Chromium for the portal's browser tests, and a CJK font for the Chinese pages' screenshots
## (Debian's packages; a note when apt-get or root is missing).
install-browser:
	@packages=""; [ -x /usr/bin/chromium ] || packages="chromium chromium-driver"; \
	{ fc-list :lang=zh 2>/dev/null | grep -q . || dpkg -s fonts-noto-cjk >/dev/null 2>&1; } || packages="$$packages fonts-noto-cjk"; \
	if [ -z "$$packages" ]; then echo "chromium: /usr/bin/chromium"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$packages; \
	else echo "apt-get unavailable or not root: install $$packages (or set CHROMIUM_BIN); without chromium the browser tests are skipped"; fi

## The deployment files' checkers (Debian's packages): docker-compose (`config` validates docker/compose.yaml),
## promtool (from prometheus) for the alert rules, nginx for platform/nginx; a note when apt-get or root is missing.
install-deploy-tools:
	@packages=""; command -v docker-compose >/dev/null || packages="docker-compose"; \
	command -v promtool >/dev/null || packages="$$packages prometheus"; \
	{ command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || packages="$$packages nginx-light"; \
	if [ -z "$$packages" ]; then echo "deploy tools: docker-compose, promtool, nginx present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$packages; \
	else echo "apt-get unavailable or not root: install $$packages; without them the deployment file checks are skipped"; fi

## The GPU worker packages (torch, diffusers): GPU images, and CI for the diffusers tests on CPU.
install-gpu: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/gpu.txt

migrate: install
	$(PY) manage.py migrate --noinput

## Serve the platform at http://$(HOST):$(PORT) in the embedded mode (or production, per the environment).
run: migrate
	$(PY) manage.py ensure_demo
	@echo "serving on http://$(HOST):$(PORT)  (admin: /admin/, API docs: /api/v1/docs)"
	$(PY) manage.py runplatform --host $(HOST) --port $(PORT)

## The embedded-mode suite, then the same suite against the production services when
## TEST_DATABASE_URL / TEST_REDIS_URL / TEST_BROKER_URL are set (.ci/run sets them).
test: install
	@echo "== test run 1: embedded mode (SQLite, local files, no external service) =="
	VAR_DIR=$$(mktemp -d) PLATFORM_TEST_RUN=embedded DATABASE_URL= REDIS_URL= BROKER_URL= CHAIN_RPC_URL= \
		VYPER_BIN=$(VYPER_VENV)/bin/vyper ANVIL_BIN=$$( [ -x $(ANVIL) ] && echo $(CURDIR)/$(ANVIL) || command -v anvil ) \
		$(PY) -m pytest $(ARGS)
	@if [ -n "$$TEST_DATABASE_URL$$TEST_REDIS_URL$$TEST_BROKER_URL" ]; then \
		echo "== test run 2: production services (database=$${TEST_DATABASE_URL:-sqlite} redis=$${TEST_REDIS_URL:-none} broker=$${TEST_BROKER_URL:-embedded}) =="; \
		VAR_DIR=$$(mktemp -d) PLATFORM_TEST_RUN=services DATABASE_URL="$$TEST_DATABASE_URL" REDIS_URL="$$TEST_REDIS_URL" \
			BROKER_URL="$$TEST_BROKER_URL" VYPER_BIN=$(VYPER_VENV)/bin/vyper \
			ANVIL_BIN=$$( [ -x $(ANVIL) ] && echo $(CURDIR)/$(ANVIL) || command -v anvil ) $(PY) -m pytest $(ARGS); \
	else \
		echo "== test run 2 skipped: no production services configured (set TEST_DATABASE_URL, TEST_REDIS_URL, TEST_BROKER_URL; see README) =="; \
	fi

## Re-pin requirements/*.txt from requirements/*.in.
requirements: install
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o base.txt base.in
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o dev.txt dev.in
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o gpu.txt gpu.in
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o vyper.txt vyper.in

clean:
	rm -rf $(VENV) var
