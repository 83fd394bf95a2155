"""Experiments, runs, metrics, datasets and lineage; MLflow-compatible REST."""
