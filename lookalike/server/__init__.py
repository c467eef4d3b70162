"""`lookalike serve`: the HTTP API, its guards and keys, the live gallery, and the web page."""
