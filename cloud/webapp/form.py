"""The settings form, described from the one schema (:class:`cloud.crm.settings.CrmSettings`), so a field added
there appears on the page (and fails the i18n test until it has a label in both languages).

:func:`describe` walks the pydantic model and gives the page one :class:`FieldSpec` per field: its ``path``
(``click_to_call.originate.prefix``; ``lines.*.name`` for the values of a map), a widget ``kind`` and the
constraints the browser can check early (the server checks everything again). A few fields hold Bitrix24 user
ids or agent ids; they are named here so the page offers a list of users or agents instead of a number.

:func:`validate` is the server's side: a document → :class:`CrmSettings`, or every problem by field path.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from cloud.crm.numbers import COUNTRIES
from cloud.crm.settings import CrmSettings, InvalidSettings

__all__ = ["AGENT_FIELDS", "SECTION_OF", "USER_FIELDS", "FieldSpec", "describe", "option_values", "paths", "validate"]

Kind = Literal["bool", "enum", "int", "str", "user", "agent", "enum_list", "str_list", "object", "map", "json"]

#: Fields whose value is a Bitrix24 user id (``*``: any key of a map).
USER_FIELDS = frozenset({"default_user_id", "lines.*.default_owner", "card_mode_by_user.key", "extension_overrides.*"})
#: Fields whose value is one of the tenant's agent ids.
AGENT_FIELDS = frozenset({"lines.*.agent_id", "click_to_call.default_agent_id"})
#: Top-level fields shown in a section of their own instead of the settings form.
SECTION_OF = {"extension_overrides": "extensions", "schema_version": "hidden"}
#: Strings checked against a fixed list by a validator: offered as a choice (options shown as they are).
CHOICES = {"default_country": sorted(COUNTRIES)}


class FieldSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    kind: Kind
    nullable: bool = False
    options: list[str] = []
    #: The options have labels in :mod:`cloud.webapp.i18n` (else they are shown as they are, e.g. country codes).
    labelled: bool = True
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    default: Any = None
    children: list[FieldSpec] = []  # object: its fields
    key: FieldSpec | None = None  # map: its key
    value: FieldSpec | None = None  # map: its values
    section: str = "settings"


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    """``Field(ge=…, le=…, max_length=…, pattern=…)`` as pydantic keeps them (``annotated_types`` objects, read by
    attribute so the Lambda needs no package pydantic does not already bring)."""
    found: dict[str, Any] = {}
    for item in metadata:
        for attribute, key in (
            ("ge", "minimum"),
            ("le", "maximum"),
            ("max_length", "max_length"),
            ("pattern", "pattern"),
        ):
            value = getattr(item, attribute, None)
            if value is not None and key not in found:
                found[key] = value
    return found


def _default_of(model: type[BaseModel]) -> Any:
    try:
        return model().model_dump(mode="json")
    except ValidationError:
        return None


def _spec(path: str, annotation: Any, metadata: list[Any], default: Any) -> FieldSpec | None:
    origin, args = get_origin(annotation), get_args(annotation)
    nullable = False
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        nullable = True
        annotation = rest[0] if len(rest) == 1 else annotation
        origin, args = get_origin(annotation), get_args(annotation)
    common: dict[str, Any] = {"path": path, "nullable": nullable, "default": default, **_constraints(metadata)}
    if annotation is bool:
        return FieldSpec(kind="bool", **common)
    if origin is Literal:
        return None if len(args) == 1 else FieldSpec(kind="enum", options=[str(a) for a in args], **common)
    if annotation is int:
        return FieldSpec(kind="user" if path in USER_FIELDS else "int", **common)
    if annotation is str and path in CHOICES:
        return FieldSpec(kind="enum", options=CHOICES[path], labelled=False, **common)
    if annotation is str:
        return FieldSpec(kind="agent" if path in AGENT_FIELDS else "str", **common)
    if origin in (list, set, frozenset, tuple) and args:
        item = args[0]
        if get_origin(item) is Literal:
            return FieldSpec(kind="enum_list", options=[str(a) for a in get_args(item)], **common)
        if item is str:
            return FieldSpec(kind="str_list", **common)
    if origin is dict and len(args) == 2:
        key = _spec(path + ".key", args[0], [], None)
        value = _spec(path + ".*", args[1], [], None)
        if key is not None and value is not None:
            return FieldSpec(kind="map", key=key, value=value, **common)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        children = [c for c in (_field(annotation, name, path + ".") for name in annotation.model_fields) if c]
        if default is None and not nullable:
            default = _default_of(annotation)
        return FieldSpec(kind="object", children=children, **{**common, "default": default or _default_of(annotation)})
    return FieldSpec(kind="json", **common)


def _field(model: type[BaseModel], name: str, prefix: str = "") -> FieldSpec | None:
    info = model.model_fields[name]
    default = info.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        default = default.model_dump(mode="json")
    elif isinstance(default, frozenset | set):
        default = sorted(default)
    spec = _spec(prefix + name, info.annotation, list(info.metadata), default)
    if spec is not None and not prefix:
        spec = spec.model_copy(update={"section": SECTION_OF.get(name, "settings")})
    return spec


def describe(model: type[BaseModel] = CrmSettings) -> list[FieldSpec]:
    """Every field of ``model`` as the page renders it (``schema_version`` is not a field anyone edits)."""
    return [spec for name in model.model_fields if (spec := _field(model, name)) and spec.section != "hidden"]


def paths(specs: list[FieldSpec] | None = None) -> list[str]:
    """Every field path, nested ones included (what needs a label)."""
    found: list[str] = []
    for spec in describe() if specs is None else specs:
        found.append(spec.path)
        found.extend(paths(spec.children))
        if spec.key is not None:
            found.append(spec.key.path)
        if spec.value is not None:
            found.extend(paths(spec.value.children) if spec.value.kind == "object" else [spec.value.path])
    return found


def option_values(specs: list[FieldSpec] | None = None) -> set[str]:
    """Every option of every enum (what needs a label)."""
    found: set[str] = set()
    for spec in describe() if specs is None else specs:
        if spec.labelled:
            found.update(spec.options)
        found |= option_values(spec.children)
        if spec.value is not None:
            found |= option_values([spec.value])
    return found


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "[key]") or "settings"


def validate(document: dict[str, Any]) -> tuple[CrmSettings | None, str, dict[str, str]]:
    """``(settings, "", {})`` when valid, else ``(None, InvalidSettings' message, {field path: problem})``."""
    try:
        return CrmSettings.model_validate(document), "", {}
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for error in exc.errors():
            fields.setdefault(_path(tuple(error["loc"])), str(error["msg"]))
    try:
        CrmSettings.parse(document)
    except InvalidSettings as exc:
        return None, str(exc), fields
    return None, "settings not saved", fields  # pragma: no cover - parse fails exactly when model_validate does
