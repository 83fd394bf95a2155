"""Hosting: models, endpoint configs, endpoints and their controllers; ``modelserver`` is the
replica process that serves one model, ``gateway`` the data plane in front of the replicas."""
