"""The command line end to end: matrices, spreadsheet, errors and exit codes."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest
from openpyxl import load_workbook

from conftest import photos_of
from lookalike.cli import main


@pytest.fixture()
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for path in photos_of("tower_bridge")[:2]:
        shutil.copy(path, folder / path.name)
    shutil.copy(photos_of("distractor")[0], folder / "nested" / "other.jpg")
    return folder


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_compare_folder_with_itself_writes_csv_and_xlsx(photo_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["compare", "photos", "--methods", "phash,akaze", "-o", "out", "-q", "-j", "1"])
    assert code == 0
    rows = read_csv(tmp_path / "out" / "phash.csv")
    assert rows[0][0] == "path" and len(rows) == 4 and all(len(r) == 4 for r in rows)
    assert rows[0][1:] == [r[0] for r in rows[1:]]
    assert all(name.startswith("photos/") for name in rows[0][1:])  # paths as given
    diagonal = [float(rows[i][i]) for i in range(1, 4)]
    assert diagonal == [1.0, 1.0, 1.0]
    workbook = load_workbook(tmp_path / "out" / "similarity.xlsx")
    assert workbook.sheetnames == ["phash", "akaze"]
    sheet = workbook["akaze"]
    assert sheet.max_row == 4 and sheet.max_column == 4
    assert sheet.conditional_formatting  # the colour scale
    assert not (tmp_path / "out" / "errors.csv").exists()


def test_bad_files_are_listed_skipped_and_exit_2(photo_folder, tmp_path, capsys):
    (photo_folder / "broken.jpg").write_text("<html>oops</html>")
    (photo_folder / "empty.png").write_bytes(b"")
    code = main(["compare", str(photo_folder), "--against", str(photos_of("tower_bridge")[0]),
                 "--methods", "dhash", "-o", str(tmp_path / "out"), "-q", "--gray"])
    assert code == 2
    errors = read_csv(tmp_path / "out" / "errors.csv")
    assert {row[0] for row in errors[1:]} == {str(photo_folder / "broken.jpg"),
                                             str(photo_folder / "empty.png")}
    assert "broken.jpg: not an image" in capsys.readouterr().err
    rows = read_csv(tmp_path / "out" / "dhash-gray.csv")
    assert len(rows) == 4 and len(rows[0]) == 2


def test_usage_errors_exit_1(tmp_path, capsys):
    assert main(["compare", str(tmp_path), "-m", "nosuch", "-o", str(tmp_path / "o")]) == 1
    assert "unknown method 'nosuch'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), "-m", "phash", "-o", str(tmp_path / "o")]) == 1
    assert main(["features", str(tmp_path), "-m", "akaze", "-o", str(tmp_path / "f")]) == 1
    assert "keypoints" in capsys.readouterr().err


def test_features_export_bits_and_vectors(photo_folder, tmp_path):
    target = tmp_path / "f.npz"
    assert main(["features", str(photo_folder), "-m", "phash", "-o", str(target), "-q"]) == 0
    data = np.load(target)
    assert data["features"].shape == (3, 64) and data["features"].dtype == np.uint8
    assert set(np.unique(data["features"])) <= {0, 1}
    assert data["paths"][0].endswith(".jpg")


def test_methods_and_help(capsys):
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert "akaze" in listed and "augnet" in listed
    import argparse

    from lookalike.cli import build_parser

    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    commands = [[]] + [[name] for name in actions[0].choices]
    for command in commands:
        command = [*command, "--help"]
        result = subprocess.run([sys.executable, "-m", "lookalike.cli", *command],
                                capture_output=True, text=True)
        assert result.returncode == 0 and "usage: lookalike" in result.stdout


def subcommand_parsers():
    """Every (sub)command's parser, nested ones (`index add`) included, with its words."""
    import argparse

    from lookalike.cli import build_parser

    found, todo = [], [((), build_parser())]
    while todo:
        words, parser = todo.pop()
        found.append((words, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(((*words, name), sub) for name, sub in action.choices.items())
    return found


def test_argparse_usage_errors_exit_1_for_every_command(capsys):
    """argparse's own exit code is 2, which means "some inputs unreadable" here."""
    from lookalike.cli import ArgumentParser

    parsers = subcommand_parsers()
    assert len(parsers) > 10
    for words, parser in parsers:
        assert isinstance(parser, ArgumentParser), words
        with pytest.raises(SystemExit) as exit_info:
            main([*words, "--no-such-option"])
        assert exit_info.value.code == 1, words
        assert "error:" in capsys.readouterr().err
    for argv in (["no-such-command"], ["compare"], ["compare", "x", "-j", "many", "-o", "o"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 1, argv
    result = subprocess.run([sys.executable, "-m", "lookalike.cli", "compare"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "required" in result.stderr


def test_a_path_that_does_not_exist_is_a_usage_error_and_writes_nothing(tmp_path, capsys,
                                                                         photo_folder):
    out = tmp_path / "out"
    missing = str(tmp_path / "nonexistent")
    assert main(["compare", missing, "-m", "phash", "-o", str(out), "-q"]) == 1
    assert f"{missing}: no such file or folder" in capsys.readouterr().err
    assert main(["compare", str(photo_folder), "--against", missing, "-m", "phash",
                 "-o", str(out), "-q"]) == 1
    assert main(["features", missing, "-m", "phash", "-o", str(tmp_path / "f.npz")]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(empty), "-m", "phash", "-o", str(out), "-q"]) == 1
    assert not out.exists() and not (tmp_path / "f.npz").exists()


def test_progress_bars_only_on_a_terminal_unless_asked(photo_folder, tmp_path, capsys,
                                                       monkeypatch):
    from lookalike.features import progress

    argv = ["compare", str(photo_folder), "-m", "ahash", "-o", str(tmp_path / "o"), "-j", "1",
            "--no-cache"]
    try:
        assert main(argv) == 0
        assert "ahash" not in capsys.readouterr().err.replace("ahash.csv", "")  # a log: no bar
        assert main([*argv, "--progress"]) == 0
        assert "0/3" in capsys.readouterr().err  # forced into a non-terminal
        assert main([*argv, "--progress", "--quiet"]) == 0
        assert capsys.readouterr().err == ""  # --quiet still wins
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
        progress.FORCE_PROGRESS = None
        assert progress.show_progress(quiet=False) and not progress.show_progress(quiet=True)
    finally:
        progress.configure(None, "lookalike")


def test_a_run_without_a_terminal_logs_plain_progress_lines(photo_folder, tmp_path):
    """stderr is a pipe here, as in CI or cron: no bar, but plain lines that say the job is
    alive (every LOOKALIKE_PROGRESS_SECONDS; 0 makes every step print one)."""
    import os

    env = {**os.environ, "LOOKALIKE_PROGRESS_SECONDS": "0"}
    command = [sys.executable, "-m", "lookalike.cli", "compare", str(photo_folder), "-m",
               "ahash", "-o", str(tmp_path / "o"), "-j", "1", "--no-cache"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr and "it/s" not in result.stderr  # no tqdm bar
    assert any(line.startswith("lookalike compare: ahash 1/3 img, ") and "s left" in line
               for line in lines), lines
    assert any(line.startswith("lookalike compare: ahash 3/3 img, done in ") for line in lines)
    quiet = subprocess.run([*command, "--quiet"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert quiet.returncode == 0 and "lookalike compare:" not in quiet.stderr


def test_log_progress_waits_its_interval():
    import io

    from lookalike.features.progress import LogProgress

    stream = io.StringIO()
    bar = LogProgress(100, "akaze", "img", interval=3600, stream=stream)
    for _ in range(100):
        bar.update(1)
    bar.close()
    assert stream.getvalue() == ""  # a job shorter than the interval says nothing
    bar = LogProgress(4, "akaze", "img", interval=0, stream=stream)
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and lines[0].startswith("lookalike: akaze 1/4 img, 0 s, ~0 s left")
    assert lines[-1].startswith("lookalike: akaze 4/4 img, done in")


def test_ocr_help_lists_only_what_ocr_uses():
    result = subprocess.run([sys.executable, "-m", "lookalike.cli", "ocr", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "--min-confidence" in result.stdout
    assert "--weights" not in result.stdout and "--device" not in result.stdout
    assert "--progress" in result.stdout


def test_max_pixels_names_the_photo_its_size_the_limit_and_the_flag(photo_folder, tmp_path,
                                                                    capsys):
    from PIL import Image

    big = photo_folder / "nested" / "other.jpg"
    width, height = Image.open(big).size
    argv = ["compare", str(photo_folder), "-m", "ahash", "-o", str(tmp_path / "o"), "-j", "1",
            "--no-cache", "-q"]
    assert main([*argv, "--max-pixels", str(width * height - 1)]) == 2
    err = capsys.readouterr().err
    assert f"{big}: too large: {width}x{height} = {width * height:,} pixels exceeds the limit " \
           f"of {width * height - 1:,}" in err and "--max-pixels" in err
    assert main([*argv, "--max-pixels", "0"]) == 0  # no limit
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--max-pixels", "-3"])
    assert refused.value.code == 1
    assert "--max-pixels: must be 0 (no limit) or more" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # not offered where it would be ignored
        main(["explain", str(big), str(big), "-o", str(tmp_path / "e.png"), "--max-pixels", "5"])
    assert refused.value.code == 1


def test_exclude_and_system_folders_are_skipped_by_the_commands(photo_folder, tmp_path):
    eadir = photo_folder / "@eaDir" / "x.jpg"
    eadir.mkdir(parents=True)
    shutil.copy(photos_of("tower_bridge")[0], eadir / "SYNOFILE_THUMB_XL.jpg")
    out = tmp_path / "o"
    argv = ["compare", str(photo_folder), "-m", "ahash", "-o", str(out), "-j", "1", "-q"]
    assert main(argv) == 0
    assert len(read_csv(out / "ahash.csv")) == 4  # the 3 photos, not the NAS thumbnail
    assert main([*argv, "--exclude", "nested"]) == 0
    names = read_csv(out / "ahash.csv")[0][1:]
    assert len(names) == 2 and not any("nested" in name for name in names)
    result = subprocess.run([sys.executable, "-m", "lookalike.cli", "-v", *argv, "--exclude",
                             "*.jpg", "--exclude", "nested"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1  # nothing left is a usage error, and the log says why
    assert "skipped 2 file(s) and 2 folder(s)" in result.stderr
