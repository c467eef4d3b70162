"""`lookalike group`: a collection grouped into landmarks by verified pairs, and its report."""
