"""A sweep's parameters file (CSV or YAML): one row per run, one environment variable per column.

Values become environment variables of their run, never text spliced into its command, so a
value cannot run as code whatever it holds. A bad row is refused before anything is
submitted, naming the row and the column.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml

from hpcbridge.errors import SpecError
from hpcbridge.jobs.fields import ENV_NAME
from hpcbridge.jobs.spec import JobSpec


def load_sweep(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``.csv`` (a header line of names) or ``.yaml``/``.yml`` file (a list of
    mappings of name to scalar), each a mapping of variable name to value."""
    sweep_path = Path(path)
    try:
        text = sweep_path.read_bytes().decode("utf-8")  # as written: "\r" in a value stays
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read sweep file {sweep_path}: {exc}") from exc
    if sweep_path.suffix.lower() == ".csv":
        rows = _csv_rows(text, sweep_path)
    elif sweep_path.suffix.lower() in (".yaml", ".yml"):
        rows = _yaml_rows(text, sweep_path)
    else:
        raise SpecError(f"sweep file {sweep_path}: name it .csv, .yaml or .yml")
    if not rows:
        raise SpecError(f"sweep file {sweep_path} holds no rows")
    return rows


def sweep_specs(spec: JobSpec, rows: list[dict[str, str]]) -> list[JobSpec]:
    """One job per row: ``spec`` with the row's values added to (or replacing) its env."""
    return [spec.model_copy(update={"env": {**spec.env, **row}}) for row in rows]


def _csv_rows(text: str, path: Path) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return []
        for column in header:
            _check_name(column, path, "the header")
        repeated = sorted({column for column in header if header.count(column) > 1})
        if repeated:
            raise SpecError(f"sweep file {path}, the header: column {repeated[0]} appears twice")
        rows: list[dict[str, str]] = []
        for number, cells in enumerate(reader, start=1):
            where = f"row {number} (line {reader.line_num})"
            if not cells:
                continue  # a blank line
            if len(cells) != len(header):
                short = len(cells) < len(header)
                problem = f"column {header[len(cells)]}: no value" if short else "too many values"
                raise SpecError(f"sweep file {path}, {where}: {problem}")
            pairs = zip(header, cells, strict=True)
            rows.append({name: _value(cell, path, where, name) for name, cell in pairs})
    except csv.Error as exc:
        raise SpecError(f"sweep file {path}, line {reader.line_num}: {exc}") from exc
    return rows


def _yaml_rows(text: str, path: Path) -> list[dict[str, str]]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"sweep file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, list):
        raise SpecError(f"sweep file {path} must hold a list of rows (mappings of name: value)")
    rows: list[dict[str, str]] = []
    for number, row in enumerate(data, start=1):
        where = f"row {number}"
        if not isinstance(row, dict):
            raise SpecError(f"sweep file {path}, {where}: a row is a mapping of name: value")
        for name in row:
            _check_name(name, path, where)
        rows.append({name: _value(value, path, where, name) for name, value in row.items()})
    return rows


def _check_name(name: Any, path: Path, where: str) -> None:
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        raise SpecError(
            f"sweep file {path}, {where}: column {name!r} is not an environment variable name "
            "(letters, digits and _, not starting with a digit)"
        )


def _value(value: Any, path: Path, where: str, column: str) -> str:
    """A cell as the text its variable will hold; YAML's true/false as written in shells."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, list | dict):
        shown = "no value" if value is None else f"{type(value).__name__} {value!r}"
        raise SpecError(
            f"sweep file {path}, {where}, column {column}: {shown}; give a number or text "
            "('' for empty)"
        )
    text = str(value)
    if "\x00" in text:
        raise SpecError(f"sweep file {path}, {where}, column {column}: holds a NUL byte")
    return text
