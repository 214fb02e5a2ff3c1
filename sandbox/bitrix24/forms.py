"""PHP-style form encoding, the way Bitrix24 reads requests and writes event posts.

Bitrix24 is PHP: a form field ``fields[PHONE][0][VALUE]=x`` arrives as a nested array, and events leave as
``http_build_query`` output with bracketed keys (DOC settings/how-to-call-rest-api/data-encoding.md,
api-reference/events/index.md). PHP arrays are both lists and maps; we build dicts and turn a dict whose keys are
exactly ``0..n-1`` into a list, which is how the JSON side of the API renders them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

_KEY = re.compile(r"^([^\[\]]*)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        converted = {k: _listify(v) for k, v in value.items()}
        keys = list(converted)
        if keys and keys == [str(i) for i in range(len(keys))]:
            return [converted[k] for k in keys]
        return converted
    return value


def parse_php_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest ``a[b][c]=v`` pairs into dicts (``a[]=v`` appends), as PHP's ``$_POST`` does."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.match(raw_key)
        if not match or not match.group(1):
            root[raw_key] = value
            continue
        parts = [match.group(1), *_PART.findall(match.group(2))]
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            key = part
            if key == "":
                key = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[key] = value
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                    node[key] = child
                node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def parse_php_query(query: str) -> dict[str, Any]:
    """Parse a query string or form body with PHP bracket semantics."""
    return parse_php_pairs(parse_qsl(query, keep_blank_values=True))


def flatten_php(value: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The inverse: ``{"data": {"CALL_ID": "x"}}`` → ``[("data[CALL_ID]", "x")]`` (PHP ``http_build_query``)."""
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(item, Mapping):
            pairs.extend(flatten_php(item, name))
        elif isinstance(item, list | tuple):
            pairs.extend(flatten_php({str(i): v for i, v in enumerate(item)}, name))
        elif item is None:
            pairs.append((name, ""))
        elif isinstance(item, bool):
            pairs.append((name, "1" if item else "0"))
        else:
            pairs.append((name, str(item)))
    return pairs


def build_php_query(value: Mapping[str, Any]) -> str:
    """Encode like PHP's ``http_build_query``: brackets percent-encoded (``data%5BCALL_ID%5D=``)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in flatten_php(value))
