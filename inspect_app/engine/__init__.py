"""Training loops, metrics, thresholds, explanations and inference, built on ``models`` and ``data``."""
