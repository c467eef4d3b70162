"""Writing results: similarity matrices as CSV and as the study's colour-scaled spreadsheet."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lookalike.errors import write_errors_csv
from lookalike.evaluation.results import CompareResult, SimilarityMatrix


def write_matrix_csv(matrix: SimilarityMatrix, path: str | os.PathLike) -> None:
    """Header `path,<gallery paths...>`, then one row per query starting with its path."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", *matrix.gallery])
        for query, row in zip(matrix.queries, matrix.scores):
            writer.writerow([query, *(f"{value:.6g}" for value in row)])


def read_matrix_csv(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """The inverse of `write_matrix_csv`: (queries, gallery, scores)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    gallery = rows[0][1:]
    queries = [row[0] for row in rows[1:]]
    scores = np.array([[float(v) for v in row[1:]] for row in rows[1:]], dtype=np.float64)
    return queries, gallery, scores.reshape(len(queries), len(gallery))


def sheet_title(name: str, used: set[str]) -> str:
    """Excel sheet names: at most 31 characters, no []:*?/\\, unique."""
    clean = "".join("_" if c in "[]:*?/\\" else c for c in name)[:31] or "sheet"
    title, number = clean, 2
    while title in used:
        suffix = f"~{number}"
        title, number = clean[: 31 - len(suffix)] + suffix, number + 1
    used.add(title)
    return title


def write_xlsx(matrices: Iterable[SimilarityMatrix], path: str | os.PathLike) -> None:
    """One sheet per method, paths as headers, a red-yellow-green colour scale over the scores."""
    from openpyxl import Workbook
    from openpyxl.formatting.rule import ColorScaleRule
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    workbook.remove(workbook.active)
    used: set[str] = set()
    for matrix in matrices:
        sheet = workbook.create_sheet(sheet_title(matrix.method, used))
        sheet.append(["path", *matrix.gallery])
        for query, row in zip(matrix.queries, matrix.scores):
            sheet.append([query, *(float(v) for v in row)])
        sheet.freeze_panes = "B2"
        sheet.column_dimensions["A"].width = 40
        if matrix.scores.size:
            last = f"{get_column_letter(len(matrix.gallery) + 1)}{len(matrix.queries) + 1}"
            sheet.conditional_formatting.add(
                f"B2:{last}",
                ColorScaleRule(start_type="min", start_color="F8696B", mid_type="percentile",
                               mid_value=50, mid_color="FFEB84", end_type="max", end_color="63BE7B"),
            )
    workbook.save(path)


def write_compare_outputs(result: CompareResult, outdir: str | os.PathLike) -> list[Path]:
    """`<method>.csv` per method, `similarity.xlsx`, and `errors.csv` when files failed."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for matrix in result.matrices.values():
        target = out / f"{matrix.method}.csv"
        write_matrix_csv(matrix, target)
        written.append(target)
    write_xlsx(result.matrices.values(), out / "similarity.xlsx")
    written.append(out / "similarity.xlsx")
    errors_path = out / "errors.csv"
    if result.errors:
        write_errors_csv(result.errors, errors_path)
        written.append(errors_path)
    elif errors_path.exists():
        errors_path.unlink()  # a stale list from an earlier run would mislead
    return written
