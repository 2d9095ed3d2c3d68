"""SPINO library code: data, models, label generator, pseudo-labels, student, metrics, reports."""
