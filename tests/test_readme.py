"""README's Python tour runs as written: its python blocks are one doctest, run from a
folder beside `shared/` (where `../shared/data/landmarks` is, as from the repository)."""

from __future__ import annotations

import doctest
import re

from conftest import REPO


def python_tour() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick tour: Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README's Quick tour: Python has no python block"
    return "\n".join(blocks)


def test_the_python_tour_in_the_readme_runs(tmp_path, monkeypatch):
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    test = doctest.DocTestParser().get_doctest(python_tour(), {}, "README.md (Python tour)",
                                               str(REPO / "README.md"), 0)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    results = runner.run(test, out=report.append)
    assert results.attempted >= 20
    assert results.failed == 0, "".join(report)
    assert (project / "town.lkidx").is_file()  # written where the tour says, nowhere else


def test_the_layout_in_the_readme_names_every_module():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    package = REPO / "lookalike"
    files = [path for folder in (package, package / "methods", package / "engines")
             for path in folder.glob("*.py") if path.name != "__init__.py"]
    missing = [path.name for path in files if f"`{path.name}`" not in layout]
    missing += [f"commands/{path.stem}" for path in (package / "commands").glob("*.py")
                if path.name != "__init__.py" and f"`{path.stem}" not in layout]
    assert missing == []
