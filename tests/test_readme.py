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


def test_the_layout_in_the_readme_has_one_line_per_subpackage():
    """README's tree names every subpackage and top-level module, and nothing that is gone."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    tree = layout.split("```", 2)[1]
    package = REPO / "lookalike"
    folders = {path.name for path in package.iterdir()
               if path.is_dir() and (path / "__init__.py").is_file()}
    modules = {path.name for path in package.glob("*.py") if path.name != "__init__.py"}
    named = set(re.findall(r"^  ([\w.]+(?:, [\w.]+)*)/?\s", tree, flags=re.M))
    named = {name.strip() for entry in named for name in entry.split(",")}
    named_folders = set(re.findall(r"^  (?:[\w.]+, )?(\w+)/", tree, flags=re.M))
    assert named_folders == folders
    assert modules <= named, modules - named
    for name in named - folders:
        assert name in modules, f"README's layout names {name}, which is not in lookalike/"
