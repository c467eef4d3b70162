"""The HTTP endpoints of `lookalike serve`, one module per area.

`photos` (identify, batch, verify), `landmarks` (list and edit the gallery), `references`
(add, remove and show reference photos), `status` (health, what a key may do) and `pages`
(the web app and the offline API docs). Each module has one `add_*_routes(app, context)`;
no module here imports FastAPI at import time (the command line stays fast), and none keeps
state of its own: everything comes from the `Context`.
"""
