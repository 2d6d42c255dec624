"""Pydantic's validation errors as a user who wrote the YAML can act on them: each field
and value named, a misspelt field matched to the one it most likely meant."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from hpcbridge.errors import SpecError

ModelT = TypeVar("ModelT", bound=BaseModel)


def validated(model: type[ModelT], data: Any, source: str) -> ModelT:
    """``model`` built from plain data; pydantic's error becomes a SpecError naming each field
    and value, as a user who wrote the YAML can act on it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc, source, model)) from exc


def describe_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel] | None = None
) -> str:
    """One line per problem: ``field.path: message (got value)``; a misspelt field of
    ``model`` (``memroy``) names the field it most likely meant (``memory``)."""
    lines = [f"{source} is invalid:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and model is not None:
            known = _fields_at(model, error["loc"][:-1])
            close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
            message = f"no such field{f'; did you mean {close[0]!r}?' if close else ''}"
        shown = error.get("input")
        got = "" if isinstance(shown, dict) or repr(shown) in message else f" (got {shown!r})"
        lines.append(f"  {field}: {message}{got}")
    return "\n".join(lines)


def _fields_at(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The field names of the model found at ``path`` inside ``model`` (through lists,
    dicts and optional fields), or none when the path leaves the models."""
    current: type[BaseModel] | None = model
    for part in path:
        if current is None:
            return []
        if isinstance(part, int):
            continue  # a list index: the same model as the list's
        field = current.model_fields.get(part)
        current = None if field is None else _model_in(field.annotation)
    return [] if current is None else list(current.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
