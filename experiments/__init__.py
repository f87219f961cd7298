"""Command-line entry points: ``python -m experiments.run`` (train) and ``python -m experiments.make_dataset``."""
