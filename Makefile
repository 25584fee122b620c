# The two commands that matter: `make demo` and `make test` (see README.md).
DATA ?=
PYTHON := .venv/bin/python

.PHONY: setup start stop status test lint demo smoke

setup:
	deploy/setup

start: setup
	deploy/stack start

stop:
	deploy/service web stop
	deploy/service batch stop
	deploy/service speed stop
	deploy/stack stop

status:
	-deploy/service speed status
	-deploy/service batch status
	-deploy/service web status
	deploy/stack status

lint: setup
	.venv/bin/ruff check .

test: setup lint
	$(PYTHON) -m pytest

demo: setup
	deploy/stack start
	deploy/demo "$(DATA)"

smoke: setup
	deploy/stack start
	$(PYTHON) -m deploy.smoke
