"""Reports: a training run's curves, an evaluation's tables, the demo's page."""
