.PHONY: run test lint setup defaults
setup:
	scripts/setup
run:
	scripts/launch
test:
	scripts/test
lint: setup
	.venv/bin/python -m ruff check studio tests
# The bundled models (resources/models) from their recipes: installs and prepares the data, then trains
# each one on from where it stands (runs/ or the shipped checkpoint), scores, exports, and logs the run
# in docs/models.md. MINUTES=N caps each recipe's training time, DEVICE=cuda uses a GPU's schedule.
defaults: setup
	scripts/setup-data all
	.venv/bin/python -m studio train --recipe all --device $(or $(DEVICE),cpu) $(if $(MINUTES),--minutes $(MINUTES)) $(if $(STEPS),--steps $(STEPS))
