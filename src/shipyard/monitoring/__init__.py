"""Model monitoring: baselines, drift and quality of captured traffic, alerts and actions."""
