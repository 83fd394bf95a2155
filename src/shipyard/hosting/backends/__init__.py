"""Where replicas run: ``local`` (process groups on this machine); Ray later, same interface."""
