# Each target bootstraps .venv itself, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= config/publisher.toml

.PHONY: run test bench build lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

# The browser test (tests/test_browser.py) drives Debian's chromium, with a Chinese font for
# its screenshots. Installed here when missing and apt-get is usable (root or passwordless
# sudo); never fails the build: where it cannot install, it says so and the test skips.
$(VENV)/.browser: | $(VENV)/.installed
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="chromium"; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$${missing:+$$missing }fonts-wqy-microhei"; \
	if [ -z "$$missing" ]; then touch $@; exit 0; fi; \
	effect="without chromium tests/test_browser.py skips; without a Chinese font its screenshots show boxes"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "browser test: cannot install $$missing (apt-get needs root or passwordless sudo): $$effect"; exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "browser test: no apt-get to install $$missing: $$effect"; exit 0; fi; \
	echo "browser test: installing $$missing with apt-get (log: $(VENV)/browser-install.log)"; \
	if { $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	     $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; } \
	     >$(VENV)/browser-install.log 2>&1; then touch $@; \
	else echo "browser test: apt-get could not install $$missing (see $(VENV)/browser-install.log): $$effect"; fi

# The bounce-mailbox tests (tests/test_bounce_mailbox.py, test_bounce_loop.py) start their own
# throwaway Dovecot on loopback (tests/dovecot.py). Installed here like the browser: when
# missing and apt-get is usable; never fails the build, and where it cannot, those tests skip.
$(VENV)/.mailbox: | $(VENV)/.installed
	@if command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; then touch $@; exit 0; fi; \
	missing="dovecot-imapd dovecot-pop3d"; \
	effect="without dovecot the bounce-mailbox tests skip"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "mailbox tests: cannot install $$missing (apt-get needs root or passwordless sudo): $$effect"; exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "mailbox tests: no apt-get to install $$missing: $$effect"; exit 0; fi; \
	echo "mailbox tests: installing $$missing with apt-get (log: $(VENV)/mailbox-install.log)"; \
	if { $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	     $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; } \
	     >$(VENV)/mailbox-install.log 2>&1; then touch $@; \
	else echo "mailbox tests: apt-get could not install $$missing (see $(VENV)/mailbox-install.log): $$effect"; fi

# `make run PORT=9000 HOST=0.0.0.0`: from the command line only (a login shell may export HOST).
# On another port the demo's own links (output.base_url, web.public_url: http://127.0.0.1:8080)
# follow it, through a copy of the demo config in var/.
ifneq ($(origin PORT),command line)
PORT :=
endif
ifneq ($(origin HOST),command line)
HOST :=
endif

run: $(VENV)/.installed
	@echo "Starting the whole service (it serves at once and builds the demo feeds in the background; Ctrl-C stops it):"
	@echo "  the 'serving http://...' line below is where it listens: the feeds at /, sign-up at /subscribe;"
	@echo "  mail (confirmations, digests) goes to var/outbox/ as .eml files, nothing is sent."
	@config='$(CONFIG)'; \
	if [ -n '$(PORT)' ] && [ '$(PORT)' != 0 ] && [ '$(PORT)' != 8080 ] && [ '$(CONFIG)' = config/publisher.toml ]; then \
	  mkdir -p var && config='var/demo-port-$(PORT).toml' && \
	  sed -e 's#http://127.0.0.1:8080#http://127.0.0.1:$(PORT)#' \
	    config/publisher.toml > "$$config" && \
	  echo "  (the demo's links use port $(PORT): $$config)"; \
	fi; \
	exec $(VENV)/bin/publisher --config "$$config" run --upgrade $(if $(HOST),--host '$(HOST)') $(if $(PORT),--port '$(PORT)')

test: $(VENV)/.installed $(VENV)/.browser $(VENV)/.mailbox
	$(PY) -m pytest -q

bench: $(VENV)/.bench
	$(PY) bench/run.py
	$(PY) bench/mail.py
	$(PY) bench/serving.py

lint: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev]'
	$(VENV)/bin/ruff check publisher tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf public var .pytest_cache
