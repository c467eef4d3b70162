"""Matching local features: tentative matches to a verified `Match`, and the ASMK kernel."""
