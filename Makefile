# sendmail-py: `make run` starts the MTA on the embedded defaults, `make test` runs every test.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
VAR := $(CURDIR)/var
CF := $(VAR)/etc-mail/sendmail.cf

.PHONY: run test lint venv etc deps bench acceptance release clean deb lab lab-down lab-transcript fuzz

venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# ./var/etc-mail: etc-mail/ with every path under ./var and unprivileged ports (2525, 2587)
etc: venv
	$(BIN)/python scripts/render_etc.py etc-mail $(VAR)
	$(BIN)/newaliases -C $(CF)
	for m in access mailertable virtusertable; do $(BIN)/makemap hash $(VAR)/etc-mail/$$m < $(VAR)/etc-mail/$$m; done

run: etc
	@echo "sendmail-py: MTA on 127.0.0.1:2525, spool $(VAR)/spool, mail in $(VAR)/mail, log $(VAR)/log/maillog"
	@echo "next, in another terminal:"
	@echo "  echo 'Subject: hi' | $(BIN)/sendmail -C $(VAR)/etc-mail/submit.cf $$USER   # submit via the MSP"
	@echo "  $(BIN)/mailq -C $(CF)                                # both queues"
	@echo "  swaks --server 127.0.0.1:2525 --to $$USER@localhost     # talk SMTP to it"
	$(BIN)/sendmail -C $(CF) -bD -q15m

deps:
	sh scripts/install-test-deps

# The lab (needs root): mail hosts st5/st2/st3, an outside sender and nsd, each in a network namespace
# smpy-lab-HOST, files under var/lab. LAB_ARGS: --st2 postfix, --no-mailertable, --scale N (up to 5).
LAB := $(VAR)/lab
lab: venv deps
	$(BIN)/python scripts/lab --state $(LAB) start $(LAB_ARGS)

lab-down:
	$(BIN)/python scripts/lab --state $(LAB) stop

# docs/lab.md (and the figure in docs/scaling.md) from one run of the lab's scenarios
lab-transcript: venv
	$(BIN)/python scripts/lab transcript

lint: venv
	$(BIN)/ruff check .

test: venv deps lint
	$(BIN)/pytest tests

# The property tests (Hypothesis) with many more examples: every test file that uses Hypothesis.
# FUZZ_EXAMPLES=200000 make fuzz for a longer run; see docs/security.md.
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -p no:cacheprovider $(shell grep -l '^from hypothesis' tests/test_*.py)

bench: venv
	sh scripts/install-bench-deps
	$(BIN)/python bench/submit.py
	$(BIN)/python bench/makemap.py
	$(BIN)/python bench/accept.py
	$(BIN)/pip install -q py-spy && $(BIN)/python bench/profile.py
	$(BIN)/python bench/queue_flush.py

# sdist + wheel in dist/, each with a detached .asc signature when RELEASE_KEY names a gpg key
release: venv
	$(BIN)/python scripts/release.py

acceptance: venv
	for t in ../shared/acceptance/[0-9]*; do python3 $$t || exit 1; done

clean:
	rm -rf $(VENV) $(VAR) build dist *.egg-info

# dist/sendmail-py_VERSION_all.deb, built with dpkg-deb (packaging/deb/, scripts/build-deb)
deb:
	sh scripts/build-deb
