"""Every capture in shared/pbs-reference is read by at least one test.

A capture nobody reads is a claim about PBS that nothing holds the emulator or the parsers to.
A file counts only when its exact name is a string constant in the code of a PBS test module:
names in comments and docstrings (which mention captures freely) do not count, nor do names
that are only part of a longer string. Files are opened by literal name today
(``REFERENCE / "qstat-x.txt"``, ``cases("multi-...")``, ``pbs_reference / name`` over a dict
of names); a folder glob would have to be added here explicitly, not matched loosely.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# test_pbs_*.py covers test_pbs_emulator, test_pbs_parse, test_pbs_accounting and test_pbs_backend.
READERS = [
    *sorted(p for p in (TESTS / "backends").glob("test_pbs_*.py") if p.name != Path(__file__).name),
    TESTS / "ledger" / "test_ledger_pbs_source.py",
]
NOT_CAPTURES = {"README.md"}  # describes the captures; the tests follow it, they do not parse it


def code_strings(path: Path) -> set[str]:
    """The string constants of a module's code, docstrings left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    }


def test_every_capture_is_read_by_a_test(pbs_reference: Path) -> None:
    named = set().union(*(code_strings(path) for path in READERS))
    captures = sorted(p.name for p in pbs_reference.iterdir() if p.name not in NOT_CAPTURES)
    assert len(captures) > 80  # the folder as documented, not an empty or wrong one
    unread = [name for name in captures if name not in named]
    assert unread == [], f"captures no test reads: {unread}"


def test_a_name_in_a_docstring_or_comment_does_not_count(tmp_path: Path) -> None:
    module = tmp_path / "test_example.py"
    module.write_text(
        '"""Compares qstat-x.txt."""\n'
        "# reads tracejob.txt\n"
        "def test_it():\n"
        '    """And qstat-a.txt."""\n'
        '    return REFERENCE / "qstat-B.txt", f"{x}-qstat-Q.txt", "see qstat-s.txt"\n'
    )
    assert code_strings(module) == {"qstat-B.txt", "-qstat-Q.txt", "see qstat-s.txt"}
