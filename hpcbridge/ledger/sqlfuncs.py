"""SQL the ledger's two databases spell differently, as SQLAlchemy constructs.

The usage report clips every attempt to each period with GREATEST/LEAST. PostgreSQL has
those functions; SQLite has none, but its multi-argument ``max()``/``min()`` are the same
scalar functions. Compiling one construct per database keeps the report a single query.
Pass only non-NULL arguments: PostgreSQL skips NULLs where SQLite returns NULL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class greatest(FunctionElement[int]):
    """The largest of integer expressions."""

    type = BigInteger()
    name = "greatest"
    inherit_cache = True


class least(FunctionElement[int]):
    """The smallest of integer expressions."""

    type = BigInteger()
    name = "least"
    inherit_cache = True


@compiles(greatest)
@compiles(least)
def _standard(element: greatest | least, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{element.name}({compiler.process(element.clauses, **kw)})"


@compiles(greatest, "sqlite")
def _sqlite_greatest(element: greatest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


@compiles(least, "sqlite")
def _sqlite_least(element: least, compiler: SQLCompiler, **kw: Any) -> str:
    return f"min({compiler.process(element.clauses, **kw)})"
