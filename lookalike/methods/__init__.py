"""The similarity methods, one file per family; each registers its classes with
`lookalike.features.registry.register`. Nothing here composes methods: that is
`lookalike.retrieval`."""
