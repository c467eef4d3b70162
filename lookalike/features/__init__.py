"""The method contract, the registry of methods, and extraction: cache, jobs, per-file errors,
progress."""
