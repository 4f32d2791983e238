"""The schema machinery itself: CRD conversion, strictness, duplicate keys, CRD extraction (`make crds`)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.chart.kube_schemas import DuplicateKeyError, Validator, crd_to_jsonschema, extract_crds, load_all


def valid(schema: dict[str, object], value: object) -> bool:
    return jsonschema.Draft202012Validator(crd_to_jsonschema(schema)).is_valid(value)


def test_objects_reject_unknown_fields_unless_preserved() -> None:
    strict = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert valid(strict, {"a": "x"})
    assert not valid(strict, {"a": "x", "b": 1})
    loose = {**strict, "x-kubernetes-preserve-unknown-fields": True}
    assert valid(loose, {"a": "x", "b": 1})
    as_map = {"type": "object", "additionalProperties": {"type": "string"}}
    assert valid(as_map, {"any": "thing"})
    assert not valid(as_map, {"any": 1})


def test_nested_objects_and_arrays_are_strict_too() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}}
        },
    }
    assert valid(schema, {"items": [{"n": 1}]})
    assert not valid(schema, {"items": [{"n": 1, "m": 2}]})


def test_int_or_string_and_nullable() -> None:
    assert valid({"x-kubernetes-int-or-string": True}, 3)
    assert valid({"x-kubernetes-int-or-string": True}, "50%")
    assert not valid({"x-kubernetes-int-or-string": True}, 1.5)
    assert valid({"type": "string", "nullable": True}, None)
    assert not valid({"type": "string"}, None)


def test_combinators_only_constrain_values() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
    }
    assert valid(schema, {"a": "x"})
    assert not valid(schema, {"a": "x", "b": "y"})


def test_duplicate_keys_are_an_error() -> None:
    with pytest.raises(DuplicateKeyError, match="'name'"):
        load_all("metadata:\n  name: a\n  name: b\n")


def test_unknown_kinds_are_reported_not_skipped() -> None:
    errors = Validator().errors({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert errors
    assert "no schema for Widget" in errors[0]


def test_extract_crds(tmp_path: Path, crd_dir: Path) -> None:
    bundle = tmp_path / "bundle.yaml"
    docs = [doc for p in sorted(crd_dir.glob("*.yaml")) for doc in load_all(p.read_text())]
    docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-a-crd"}})
    bundle.write_text(yaml.safe_dump_all(docs))
    out = tmp_path / "crds"
    count = extract_crds(out, [bundle])
    assert count == len(docs) - 1
    assert len(list(out.glob("*.yaml"))) == count
    assert set(Validator(out).crds) == set(Validator(crd_dir).crds)
