"""Quality against the teacher on held-out pairs: metrics, one evaluation for models and editors, curves."""
