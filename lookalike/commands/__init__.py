"""The command line, one file per command: its argument parser and its `run`.

A command parses and checks its arguments at the edge, builds the library's settings objects,
calls the library and prints or writes the result; the work itself lives in the library
(`lookalike.evaluation.compare`, `lookalike.gallery.index`, `lookalike.gallery.identify`, ...), which never imports
anything from here. Shared options, exit codes and the mapping of errors to exit codes are in
`common.py`.

Adding a command is one file and one line:

1. `lookalike/commands/NAME.py` defines `add_command(subparsers)`, which adds its parser
   (`subparsers.add_parser("NAME", ...)`, `common.add_common_options(parser)` for the shared
   options) and sets `handler=run`; `run(args) -> int` returns an exit code. Import heavy
   libraries (torch, cv2, fastapi) inside `run`, so that `lookalike --help` stays fast.
2. Add "NAME" to `COMMANDS` in `lookalike/cli.py`, in the order `lookalike --help` lists it.

A mistake of the caller is raised as `common.UsageError` here, or as the library's
`lookalike.errors.InputError` (and its subclasses) below: both become exit code 1 with the
message on stderr. Exit code 2 means some input files could not be read (`report_errors`).
"""
