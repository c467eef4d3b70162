"""A command that needs a missing optional part says which extra to install."""

from __future__ import annotations

import sys

import pytest

from lookalike.cli import main
from lookalike.extras import MissingExtra, install_hint, optional_import
from lookalike.ocr.reader import OcrUnavailable


def hide(monkeypatch, *modules: str) -> None:
    """Make `import module` fail as if it were not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_optional_import_names_the_extra(monkeypatch):
    assert optional_import("json", "serve").dumps([]) == "[]"
    hide(monkeypatch, "uvicorn")
    with pytest.raises(MissingExtra, match=r"uvicorn.*pip install 'lookalike\[serve\]'"):
        optional_import("uvicorn", "serve")
    with pytest.raises(OcrUnavailable, match=r"lookalike\[ocr\]"):
        optional_import("uvicorn", "ocr", OcrUnavailable)
    with pytest.raises(ValueError, match="unknown extra"):
        optional_import("json", "nope")


@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "python_multipart"])
def test_serve_without_its_packages_says_install_the_serve_extra(module, monkeypatch, tmp_path,
                                                                 capsys):
    hide(monkeypatch, module)
    assert main(["serve", "--index", str(tmp_path / "any.lkidx")]) == 1
    err = capsys.readouterr().err
    assert module in err and install_hint("serve") in err


def test_ray_engine_without_ray_says_install_the_ray_extra(monkeypatch):
    from lookalike.engines.ray import ensure_ray

    hide(monkeypatch, "ray")
    with pytest.raises(MissingExtra, match=r"lookalike\[ray\]"):
        ensure_ray()


def test_ocr_engines_without_their_packages_say_install_the_ocr_extra(monkeypatch):
    from lookalike.ocr.scenetext import SceneTextReader
    from lookalike.ocr.tesseract import _Engines

    hide(monkeypatch, "onnxruntime", "tesserocr")
    with pytest.raises(OcrUnavailable, match=r"onnxruntime.*lookalike\[ocr\]"):
        SceneTextReader()
    with pytest.raises(OcrUnavailable, match=r"tesserocr.*lookalike\[ocr\]"):
        _Engines().api("eng")
