"""Training and processing jobs: spec, runtime contract, backends, controller."""
