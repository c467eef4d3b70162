"""Composing the methods: the two-stage pipeline (shortlist, verify, expand, calibrate),
its calibration, the named presets, `fused`, and the picture of one pair's matches."""
