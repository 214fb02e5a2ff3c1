"""PHP-style forms both ways: ``fields[PHONE][0][VALUE]=x`` (Bitrix24 is PHP; protocols.md §A1.1, §A6.3).

Encoding builds batch commands (``method?query``, §A5); parsing reads the install form and event posts, which
arrive form-encoded with bracket keys (percent-encoded or not). A PHP array is both list and map: a map whose
keys are exactly ``0..n-1`` is returned as a list, as the JSON side of the API renders it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

__all__ = ["FormError", "encode_command", "flatten", "parse_body", "parse_form"]

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
#: ``$result[cmd][FIELD][0]``: a batch reference, substituted by the portal (kept readable in the query).
_REFERENCE = re.compile(r"^\$result(\[[^\[\]]*\])+$")
MAX_FIELDS = 1000  # PHP's max_input_vars; a bigger event body is not from Bitrix24
MAX_DEPTH = 8


class FormError(ValueError):
    """The body is not a form Bitrix24 would send; the message says why."""


def flatten(value: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``{"FILTER": {"ID": [1, 2]}}`` → ``[("FILTER[ID][0]", "1"), ("FILTER[ID][1]", "2")]`` (``http_build_query``:
    ``True``/``False`` → ``"1"``/``"0"``, ``None`` → ``""``)."""
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(item, Mapping):
            pairs.extend(flatten(item, name))
        elif isinstance(item, list | tuple):
            pairs.extend(flatten({str(i): v for i, v in enumerate(item)}, name))
        elif item is None:
            pairs.append((name, ""))
        elif isinstance(item, bool):
            pairs.append((name, "1" if item else "0"))
        else:
            pairs.append((name, str(item)))
    return pairs


def encode_command(method: str, params: Mapping[str, Any] | None = None) -> str:
    """One batch command: ``method?query`` (keys with literal brackets, values percent-encoded except batch
    references such as ``$result[reg][CALL_ID]``, which pass through as written)."""
    if not method or any(ch in method for ch in "?&= "):
        raise ValueError(f"not a REST method name: {method[:60]!r}")
    pairs = flatten(params or {})
    if not pairs:
        return method
    query = "&".join(
        f"{quote(key, safe='[]')}={quote(value, safe='$[]') if _REFERENCE.match(value) else quote(value, safe='')}"
        for key, value in pairs
    )
    return f"{method}?{query}"


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        converted = {k: _listify(v) for k, v in value.items()}
        if converted and list(converted) == [str(i) for i in range(len(converted))]:
            return list(converted.values())
        return converted
    return value


def parse_form(body: str) -> dict[str, Any]:
    """A form body → nested dicts/lists, PHP ``$_POST`` style (``a[]=x`` appends; a later value for the same
    key wins). :class:`FormError` for a body no Bitrix24 post would have (not ``key=value``, too many fields,
    too deep, a key that is both a value and an array)."""
    try:
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body), max_num_fields=MAX_FIELDS)
    except ValueError as exc:
        raise FormError(f"not a form body: {str(exc)[:120]}") from None
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.match(raw_key)
        if not match:
            raise FormError(f"malformed form key {raw_key[:60]!r}")
        parts = [match.group(1), *_PART.findall(match.group(2))]
        if len(parts) > MAX_DEPTH:
            raise FormError(f"form key nested deeper than {MAX_DEPTH}: {raw_key[:60]!r}")
        node = root
        for i, part in enumerate(parts):
            key = part if part != "" else str(sum(1 for k in node if k.isdigit()))
            if i == len(parts) - 1:
                if isinstance(node.get(key), dict):
                    raise FormError(f"form key {raw_key[:60]!r} is both a value and an array")
                node[key] = value
            else:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):
                    raise FormError(f"form key {raw_key[:60]!r} is both a value and an array")
                node = child
    return {key: _listify(value) for key, value in root.items()}


def parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    """A posted body: a form (what Bitrix24 sends) or a JSON object (the docs' JSON view of the same events)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("the body is not UTF-8") from None
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            data = json.loads(text) if text else {}
        except (ValueError, RecursionError):
            raise FormError("the body is not JSON") from None
        if not isinstance(data, dict):
            raise FormError("the JSON body is not an object")
        return data
    return parse_form(text)
