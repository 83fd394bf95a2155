"""Lineage: the graph from dataset versions through jobs and runs to model versions."""
