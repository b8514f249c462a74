"""Validating what a command printed against its committed schema (docs/schema/)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schema"


@cache
def validator(kind: str) -> Draft202012Validator:
    path = SCHEMA_DIR / f"{kind}.schema.json"
    assert path.exists(), f"no schema for {kind} documents: {path}"
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate(doc: Any, kind: str) -> Any:
    """Fail with every violation listed; return ``doc`` for chaining."""
    errors = sorted(validator(kind).iter_errors(doc), key=lambda e: list(e.absolute_path))
    detail = "\n".join(f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    assert not errors, f"{kind} document does not match docs/schema/{kind}.schema.json:\n{detail}"
    return doc


def validated(stdout: str, kind: str) -> Any:
    assert stdout, f"no {kind} document printed"
    return validate(json.loads(stdout), kind)
