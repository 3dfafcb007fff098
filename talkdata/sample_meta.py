"""One type per field in every sample's ``json``, driven by ``schemas/sample.schema.json``.

Readers that build a table from the samples (Hugging Face ``datasets``, pandas, pyarrow) need a
field to have one type in every sample. The corpus modules leave a field ``None`` when a clip has
no value (a GRID clip without an alignment file, a CREMA-D sentence code without a text);
:func:`normalize` replaces such a ``None`` with the empty value of the field's declared type, so a
string field is ``""`` and a list field ``[]`` in every sample. Numbers, booleans and objects stay
``None`` (a null number or struct is a value of the same column type in Arrow).
"""

from __future__ import annotations

from functools import lru_cache

#: the empty value of each JSON-schema type that has one
_EMPTY = {"string": "", "array": list}


@lru_cache(maxsize=1)
def _empty_values() -> dict[str, object]:
    """``{field: empty value}`` for the schema's nullable string and array fields."""
    from .recipe import load_schema

    empties = {}
    for name, spec in load_schema("sample")["properties"].items():
        types = spec.get("type")
        if isinstance(types, list) and "null" in types:
            kinds = [t for t in types if t != "null" and t in _EMPTY]
            if len(kinds) == 1:
                empties[name] = _EMPTY[kinds[0]]
    return empties


def normalize(meta: dict) -> dict:
    """``meta`` with each ``None`` of a nullable string / array field replaced by ``""`` / ``[]``."""
    empties = _empty_values()
    out = dict(meta)
    for name, empty in empties.items():
        if name in out and out[name] is None:
            out[name] = empty() if callable(empty) else empty
    return out
