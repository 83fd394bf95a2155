"""The model registry: groups, versions, scanning, approval, model cards, lineage."""
