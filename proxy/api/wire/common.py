"""Bounded field types shared by every request model, and the shapes every surface answers with.

The bounds are proxy/limits.py's: a validator calls the same checks the hand-written routes use, so a field
fails with the same 422 (and `param`) whichever way it is read, and the schema shows the bound.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationInfo, WithJsonSchema

from proxy.api.operations import QueryParams
from proxy.limits import (MAX_DESCRIPTION_CHARS, MAX_INT, MAX_JSON_BYTES, MAX_LIST_ITEMS, MAX_NAME_CHARS,
                          MAX_TEXT_CHARS, check_int, check_json, check_text)


def _text(max_chars: int) -> Any:
    def check(value: str, info: ValidationInfo) -> str:
        return check_text(value, info.field_name or "value", max_chars)

    return AfterValidator(check)


def _json(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    return check_json(value, info.field_name or "value")  # type: ignore[no-any-return]


def _items(value: list[Any], info: ValidationInfo) -> list[Any]:
    if len(value) > MAX_LIST_ITEMS:
        from proxy.errors import unprocessable

        name = info.field_name or "value"
        raise unprocessable(f"{name!r} has {len(value)} items; the limit is {MAX_LIST_ITEMS}", param=name)
    return value


Name = Annotated[str, _text(MAX_NAME_CHARS), WithJsonSchema({"type": "string", "maxLength": MAX_NAME_CHARS})]
Description = Annotated[str, _text(MAX_DESCRIPTION_CHARS),
                        WithJsonSchema({"type": "string", "maxLength": MAX_DESCRIPTION_CHARS})]
Text = Annotated[str, _text(MAX_TEXT_CHARS), WithJsonSchema({"type": "string", "maxLength": MAX_TEXT_CHARS})]
NameList = Annotated[list[Name], AfterValidator(_items),
                     WithJsonSchema({"type": "array", "maxItems": MAX_LIST_ITEMS,
                                     "items": {"type": "string", "maxLength": MAX_NAME_CHARS}})]
Metadata = Annotated[dict[str, Any], AfterValidator(_json),
                     WithJsonSchema({"type": "object", "description": f"free-form JSON, at most {MAX_JSON_BYTES} "
                                     "bytes encoded", "additionalProperties": True})]
def _in_int_range(value: Any, info: ValidationInfo) -> Any:
    # Compared as a float, -2**63 equals -(2**63 - 1): check integers exactly, before they become floats.
    if isinstance(value, int) and not isinstance(value, bool):
        check_int(value, info.field_name or "value", low=-MAX_INT)
    return value


Number = Annotated[float, BeforeValidator(_in_int_range), Field(ge=-MAX_INT, le=MAX_INT)]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error, on every route: OpenAI's shape."""

    error: ErrorDetail


class Deleted(BaseModel):
    id: str
    deleted: bool
    message: str | None = None


class PageQuery(QueryParams):
    """Letta's cursors: ids relative to the requested order; `after=<last id>` is the next page."""

    before: str | None = None
    after: str | None = None
    limit: Annotated[int, Field(ge=1, le=10000)] | None = None
    order: Literal["asc", "desc"] | None = None
    ascending: bool | None = None  # Letta's older spelling of `order`
