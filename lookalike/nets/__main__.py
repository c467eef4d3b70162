"""`python -m lookalike.nets`: export every graph the shipped presets run, ahead of use.

For a machine that serves without torch: run this once where torch is installed, then copy
the models folder ($LOOKALIKE_MODELS, else ~/.cache/lookalike/models) beside the server. It
sits above the runtime modules (each keeps its own graphs), so none of them imports another's.
"""

from __future__ import annotations

from pathlib import Path

from lookalike.nets import local_runtime, runtime


def export_all() -> list[Path]:
    """ALIKED and LightGlue (`default`, `accurate`), XFeat (`fast`)."""
    return runtime.export_all() + local_runtime.export_all()


if __name__ == "__main__":  # pragma: no cover - a convenience for deployment
    for exported in export_all():
        print(exported)
