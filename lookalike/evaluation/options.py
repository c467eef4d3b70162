"""Options of `evaluate` that its parser shows, importable without numpy or torch so that the
command line starts fast."""

# `evaluate --gray`: the colour modes each method is evaluated in.
GRAY_MODES = {"no": [False], "yes": [True], "both": [False, True]}
