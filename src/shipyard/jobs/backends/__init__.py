"""Compute backends that run a job's instances: local processes (default) and, later, Ray."""
