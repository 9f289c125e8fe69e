# Each target bootstraps .venv itself, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= config/publisher.toml

.PHONY: run test bench bench-scale build lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The benches measure the package as a user installs it: built and installed non-editable in a
# venv of its own, with its runtime dependencies and the benches' peers only. Not the test venv:
# lxml imports rnc2rng (a test tool) when it is there, which adds 0.15 s to every process.
# Reinstalled whenever a shipped file changes, is added or is removed (a folder's time changes
# then); built from a clean build/ folder, so a removed file is not shipped from the last build.
BENCH_VENV := .venv-bench
BENCH_PY   := $(BENCH_VENV)/bin/python
SHIPPED    := publisher templates config demo
$(BENCH_VENV)/.installed: pyproject.toml setup.py README.md $(shell find $(SHIPPED) -not -name '*.pyc' -not -path '*/__pycache__*' 2>/dev/null)
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet '.[bench]'
	rm -rf build
	$(BENCH_PY) -m pip install --quiet --no-deps --force-reinstall .
	touch $@

# What the Debian tools below were checked or installed for: a folder of its own, so that
# `make bench` needs no test venv.
STAMPS := .stamps
$(STAMPS):
	mkdir -p $@

# Debian packages some tests drive (a browser, a mail server, nginx): each is installed when
# missing and apt-get is usable (root or passwordless sudo); never fails the build: where it
# cannot install, it says so and those tests skip, saying why. $(1): what for, $(2): the
# packages missing (empty: nothing to do), $(3): what missing them costs, $(4): the stamp.
define apt_install
	@missing="$(strip $(2))"; \
	if [ -z "$$missing" ]; then touch $(4); exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "$(1): cannot install $$missing (apt-get needs root or passwordless sudo): $(strip $(3))"; exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "$(1): no apt-get to install $$missing: $(strip $(3))"; exit 0; fi; \
	log=$(4)-install.log; echo "$(1): installing $$missing with apt-get (log: $$log)"; \
	if { $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	     $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; } \
	     >$$log 2>&1; then touch $(4); \
	else echo "$(1): apt-get could not install $$missing (see $$log): $(strip $(3))"; fi
endef

# The browser tests drive Debian's chromium, with a Chinese font for their screenshots.
$(STAMPS)/browser: | $(STAMPS)
	$(call apt_install,browser tests,$(shell command -v chromium >/dev/null 2>&1 || echo chromium) \
	  $(shell fc-list :lang=zh 2>/dev/null | grep -q . || echo fonts-wqy-microhei),\
	  without chromium the browser tests skip; without a Chinese font their screenshots show boxes,$@)

# The suite's PostgreSQL run (tests/backends.py) uses $PUBLISHER_TEST_POSTGRES, else the server on
# 127.0.0.1:5432, else starts a throwaway one from Debian's binaries: installed here when missing.
$(STAMPS)/postgres: | $(STAMPS)
	$(call apt_install,PostgreSQL tests,$(shell ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || echo postgresql),\
	  without them the PostgreSQL run's store tests skip where no server answers at 127.0.0.1:5432,$@)

# The bounce-mailbox tests (tests/test_bounce_mailbox.py, test_bounce_loop.py) start their own
# throwaway Dovecot on loopback (tests/dovecot.py).
$(STAMPS)/mailbox: | $(STAMPS)
	$(call apt_install,mailbox tests,$(shell command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] \
	  || echo dovecot-imapd dovecot-pop3d),without dovecot the bounce-mailbox tests skip,$@)

# tests/test_nginx_config.py and the serving bench run nginx with config/nginx.conf, the settings
# docs/operations.md puts in front of the feed server.
$(STAMPS)/nginx: | $(STAMPS)
	$(call apt_install,nginx,$(shell command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] \
	  || echo nginx-light),without nginx tests/test_nginx_config.py skips and the serving bench has no ratio,$@)

# The benches' other peers and tools (docs/performance.md): Hugo for the cold build, Postfix's
# smtp-sink for the mail bench, wrk for the serving bench.
$(STAMPS)/hugo: | $(STAMPS)
	$(call apt_install,build bench,$(shell command -v hugo >/dev/null 2>&1 || echo hugo),\
	  without hugo the build bench skips its aims against Hugo and tests/test_bench_aims.py its Hugo check,$@)

$(STAMPS)/smtp-sink: | $(STAMPS)
	$(call apt_install,mail bench,$(shell command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] \
	  || echo postfix),without smtp-sink the mail bench skips,$@)

$(STAMPS)/wrk: | $(STAMPS)
	$(call apt_install,serving bench,$(shell command -v wrk >/dev/null 2>&1 || echo wrk),\
	  without wrk the serving bench skips,$@)

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

# The suite runs twice, on each store backend (tests/backends.py), each run on every core; the
# second runs even when the first failed, and the target fails if either did.
test: $(VENV)/.installed $(STAMPS)/browser $(STAMPS)/mailbox $(STAMPS)/nginx $(STAMPS)/hugo $(STAMPS)/postgres
	@status=0; \
	$(PY) -m pytest -q -n auto --backend sqlite || status=1; \
	$(PY) -m pytest -q -n auto --backend postgresql || status=1; \
	exit $$status

# The four benches of issue 16, then one summary of their aims (bench/summary.py). A bench whose
# tool is missing says so and skips (mail.py exits 2); the target fails only when one crashed.
bench: $(BENCH_VENV)/.installed $(STAMPS)/hugo $(STAMPS)/smtp-sink $(STAMPS)/wrk $(STAMPS)/nginx
	@$(BENCH_PY) bench/summary.py --start
	@status=0; \
	$(BENCH_PY) bench/run.py || status=1; \
	$(BENCH_PY) bench/mail.py; rc=$$?; [ $$rc = 0 ] || [ $$rc = 2 ] || status=1; \
	$(BENCH_PY) bench/serving.py || status=1; \
	$(BENCH_PY) bench/summary.py || status=1; \
	exit $$status

# bench/scale.py: a digest to a million generated readers by 1, 2 and 4 `publisher worker`
# processes through a loopback double of Postmark's batch API (docs/performance.md: about an hour
# on 2 cores; `make bench-scale SCALE_ARGS=--quick` is a smoke run of 20,000 readers). Not part of
# `make bench`. It needs a PostgreSQL server ($PUBLISHER_TEST_POSTGRES, else 127.0.0.1:5432; it
# says so and skips without one) and the `postgres` extra in the bench venv.
SCALE_ARGS ?=
$(BENCH_VENV)/.postgres: $(BENCH_VENV)/.installed
	$(BENCH_PY) -m pip install --quiet '.[postgres]'
	touch $@

bench-scale: $(BENCH_VENV)/.postgres
	@$(BENCH_PY) bench/scale.py $(SCALE_ARGS); rc=$$?; [ $$rc = 0 ] || [ $$rc = 2 ]

lint: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev]'
	$(VENV)/bin/ruff check publisher tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf public var .pytest_cache
