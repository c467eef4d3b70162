"""The wheel, installed into a fresh virtual env, works outside the repo and declares its imports.

The wheel is built from a copy of the sources (no build/ or egg-info left in the checkout),
installed with `--no-deps --no-index` into a new env that reuses this env's packages through a
.pth file (torch and the rest are not downloaded again), and run from a folder outside the
repo, so the checkout's `lookalike/` cannot stand in for the installed one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from landmark_gallery import DISTRACTOR, QUERIES, REPO, make_gallery, photo
from live_server import free_port

pytestmark = pytest.mark.slow

# Run inside the fresh env: every module the installed package imports (statements, and
# optional_import("module", ...) calls) must come from a distribution its metadata requires.
IMPORT_CHECK = r'''
import ast, importlib.metadata as md, json, pathlib, re, sys
import lookalike
package = pathlib.Path(lookalike.__file__).parent
declared = set()
for requirement in md.requires("lookalike"):
    declared.add(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
providers = md.packages_distributions()
imported = {}
for path in package.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "optional_import"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names = [node.args[0].value]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "lookalike":
                imported.setdefault(top, str(path.relative_to(package)))
undeclared = {}
for module, where in sorted(imported.items()):
    dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
    if not dists & declared:
        undeclared[module] = [where, sorted(dists)]
print(json.dumps({"file": lookalike.__file__, "declared": sorted(declared),
                  "imported": sorted(imported), "undeclared": undeclared}))
'''


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory) -> Path:
    """A new virtual env holding only the built wheel, beside this env's packages."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "lookalike", source / "lookalike",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(root / "dist"), str(source)],
                   check=True, cwd=root)
    wheel = next((root / "dist").glob("lookalike-*.whl"))
    env = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], check=True, capture_output=True, text=True)
    Path(site.stdout.strip(), "reuse-heavy-deps.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, cwd=root)
    return env


def run_fresh(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([str(env / "bin" / "lookalike"), *args], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=240)


def test_installed_package_declares_every_import(fresh_env, tmp_path):
    done = subprocess.run([str(fresh_env / "bin" / "python"), "-c", IMPORT_CHECK], cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert report["file"].startswith(str(fresh_env))  # the wheel's copy, not the checkout
    assert "torch" in report["imported"] and "fastapi" in report["imported"]
    assert report["undeclared"] == {}
    assert "pytesseract" not in report["declared"]


def test_installed_commands_work_outside_the_repo(fresh_env, tmp_path):
    methods = run_fresh(fresh_env, "methods", cwd=tmp_path)
    assert methods.returncode == 0 and "asmk" in methods.stdout and "fused" in methods.stdout
    gallery = make_gallery(tmp_path / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    index = tmp_path / "town.lkidx"
    cache = ["--cache", str(tmp_path / "cache.sqlite")]
    built = run_fresh(fresh_env, "index", "build", str(gallery), "-o", str(index), "--preset",
                      "fast", "-q", "-j", "1", *cache, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    answer = run_fresh(fresh_env, "identify", "--index", str(index), "--json", *cache,
                       str(photo(QUERIES["strecha_castle"])), str(photo(DISTRACTOR)), cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    landmarks = [json.loads(line)["landmark"] for line in answer.stdout.splitlines()]
    assert landmarks == ["strecha_castle", "unknown"]
    assert_serves_health(fresh_env, index, tmp_path)


def assert_serves_health(env: Path, index: Path, folder: Path) -> None:
    port = free_port()
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    server = subprocess.Popen([str(env / "bin" / "lookalike"), "serve", "--index", str(index),
                               "--port", str(port), "--data-dir", str(folder / "data")],
                              cwd=folder, env=clean, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        health = wait_for_health(port, server)
        assert health["status"] == "ok", health
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_for_health(port: int, server: subprocess.Popen, seconds: float = 90) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve ended: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                return json.loads(reply.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError("serve did not answer /health in time")
