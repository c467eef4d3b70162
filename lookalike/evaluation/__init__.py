"""Measuring: compare photos, evaluate on labelled datasets, metrics, reports, and fitting
calibrations on the same runs."""
