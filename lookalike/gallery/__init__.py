"""An index of landmark photos on disk, and identifying photos against it."""
