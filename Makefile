.PHONY: run test lint setup
setup:
	scripts/setup
run:
	scripts/launch
test:
	scripts/test
lint: setup
	.venv/bin/python -m ruff check studio tests
