"""Evaluation: inference, metrics, the methods table, the paper's tables and figures, claims."""
