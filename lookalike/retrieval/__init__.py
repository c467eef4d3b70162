"""Composing the methods: the two-stage pipeline (shortlist, verify, expand, calibrate),
its calibration, the named presets, `fused`, and explaining one pair."""
