"""Before and after the labels: which images to annotate, reviewing the pseudo-labels."""
