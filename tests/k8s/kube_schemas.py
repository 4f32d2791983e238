"""Offline validation of Kubernetes objects: Kubernetes' JSON schemas and CRDs, unknown fields rejected.

* Built-in kinds: the strict JSON schemas that the ``kubernetes-validate`` package bundles (generated
  from the Kubernetes OpenAPI spec, ``additionalProperties: false`` everywhere), for ``K8S_VERSION``.
* Custom resources: each CRD's ``openAPIV3Schema`` converted to JSON Schema. Objects get
  ``additionalProperties: false`` wherever the CRD does not say ``x-kubernetes-preserve-unknown-fields``
  (the API server would prune such fields silently; here they are an error); ``x-kubernetes-int-or-string``
  and ``nullable`` become the JSON Schema equivalents; ``metadata`` is checked as an ObjectMeta.
  CEL rules (``x-kubernetes-validations``) are not evaluated.

YAML is read with a loader that rejects duplicate keys (the API server would keep one of them).

``python -m tests.k8s.kube_schemas extract-crds OUT_DIR FILE...`` keeps only the CRDs of the given
multi-document YAML files (``make crds`` feeds it ``helm template --include-crds`` output).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

K8S_VERSION = "1.37.0"
CRD_GROUPS = ("kafka.strimzi.io", "monitoring.coreos.com", "keda.sh")
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

Obj = dict[str, Any]


class DuplicateKeyError(yaml.YAMLError):
    pass


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: much faster


class StrictLoader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader that refuses a mapping with the same key twice."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise DuplicateKeyError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 (PyYAML) resolves a plain `=` to the "value" type, which it cannot construct; Kubernetes' YAML
# reads it as the string "=" (the AlertmanagerConfig CRD's matchType enum: `- =`).
StrictLoader.add_constructor(
    "tag:yaml.org,2002:value",
    lambda loader, node: loader.construct_scalar(node),
)


def load_all(text: str) -> list[Obj]:
    """Every non-empty document of a multi-document YAML text."""
    return [doc for doc in yaml.load_all(text, Loader=StrictLoader) if doc]


def load_file(path: Path) -> list[Obj]:
    return load_all(path.read_text(encoding="utf-8"))


# --- Kubernetes' own schemas -------------------------------------------------------------------------


def schema_root(version: str = K8S_VERSION) -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("kubernetes-validate is not installed (make init)")
    root = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"
    path = root / f"v{version}-local-strict"
    if not path.is_dir():
        raise RuntimeError(f"kubernetes-validate has no schemas for Kubernetes {version} under {root}")
    return path


@cache
def _k8s_registry(version: str) -> Registry:
    defs = json.loads((schema_root(version) / "_definitions.json").read_text())
    registry: Registry = Resource.from_contents(defs) @ Registry()
    return registry


def _builtin_schema_file(api_version: str, kind: str, version: str) -> Path:
    # kubernetes-validate's naming: apps/v1 -> apps-v1, networking.k8s.io/v1 -> networking-v1, v1 -> v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return schema_root(version) / f"{kind.lower()}-{group_version}.json"


# --- CRD schemas -------------------------------------------------------------------------------------

_SUBSCHEMAS = ("items", "additionalProperties")


def crd_to_jsonschema(node: Obj) -> Obj:
    """An openAPIV3Schema (structural) as a strict JSON Schema.

    oneOf/anyOf/allOf/not are copied as they are: in a structural schema they only constrain values
    (every field is declared outside them), so they get no ``additionalProperties: false``.
    """
    out: Obj = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "format", "description", "example"):
            continue
        if key == "properties":
            out[key] = {name: crd_to_jsonschema(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMAS and isinstance(value, dict):
            out[key] = crd_to_jsonschema(value)
        else:
            out[key] = copy.deepcopy(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}, *out.get("anyOf", [])]
    is_object = node.get("type") == "object"
    preserve = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-embedded-resource")
    if is_object and not preserve and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@dataclass(frozen=True)
class CrdSchema:
    group: str
    version: str
    kind: str
    schema: Obj
    source: str


def crds_in(paths: Iterable[Path]) -> Iterator[tuple[Obj, Path]]:
    for path in paths:
        for doc in load_file(path):
            if doc.get("kind") == "CustomResourceDefinition":
                yield doc, path


def crd_files(crd_dir: Path) -> list[Path]:
    return sorted(p for p in crd_dir.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file())


def load_crd_schemas(crd_dir: Path) -> dict[tuple[str, str], CrdSchema]:
    """(apiVersion, kind) -> converted schema, for every served version of every CRD under ``crd_dir``."""
    out: dict[tuple[str, str], CrdSchema] = {}
    for crd, path in crds_in(crd_files(crd_dir)):
        spec = crd["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            raw = version.get("schema", {}).get("openAPIV3Schema")
            if raw is None:
                continue
            schema = crd_to_jsonschema(raw)
            props = schema.setdefault("properties", {})
            api_version = f"{group}/{version['name']}"
            props["apiVersion"] = {"type": "string", "enum": [api_version]}
            props["kind"] = {"type": "string", "enum": [kind]}
            props["metadata"] = {
                "$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
            }
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
            # an id under the same host as Kubernetes' schemas, so that the ObjectMeta $ref resolves
            schema["$id"] = f"https://kubernetes.io/crd/{group}/{version['name']}/{kind.lower()}"
            out[(api_version, kind)] = CrdSchema(group, version["name"], kind, schema, path.name)
    return out


# --- validation --------------------------------------------------------------------------------------


@dataclass
class Validator:
    """Validates objects against built-in schemas and the CRDs found in ``crd_dir`` (if any)."""

    crd_dir: Path | None = None
    version: str = K8S_VERSION
    crds: dict[tuple[str, str], CrdSchema] = field(init=False)
    _cache: dict[tuple[str, str], jsonschema.protocols.Validator] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.crds = load_crd_schemas(self.crd_dir) if self.crd_dir else {}

    def _validator(self, api_version: str, kind: str) -> jsonschema.protocols.Validator:
        key = (api_version, kind)
        if key not in self._cache:
            registry = _k8s_registry(self.version)
            if key in self.crds:
                schema = self.crds[key].schema
            else:
                path = _builtin_schema_file(api_version, kind, self.version)
                if not path.is_file():
                    group = api_version.split("/", maxsplit=1)[0] if "/" in api_version else ""
                    where = "the CRDs in CRD_DIR" if group in CRD_GROUPS else f"Kubernetes {self.version}"
                    raise LookupError(f"no schema for {kind} {api_version} in {where}")
                schema = json.loads(path.read_text())
            self._cache[key] = jsonschema.Draft202012Validator(schema, registry=registry)
        return self._cache[key]

    def errors(self, obj: Obj) -> list[str]:
        """Every schema violation of ``obj``, as 'path: message' lines (empty when valid)."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return ["apiVersion and kind must be strings"]
        try:
            validator = self._validator(api_version, kind)
        except LookupError as exc:
            return [str(exc)]
        found = []
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            where = ".".join(str(p) for p in err.absolute_path) or "(root)"
            found.append(f"{where}: {err.message[:300]}")
        return found


def describe(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name')}"


def extract_crds(out_dir: Path, sources: list[Path]) -> int:
    """Write the CRDs of ``sources`` (multi-document YAML) to ``out_dir``, one file per CRD."""
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for crd, _ in crds_in(sources):
        if crd["spec"]["group"] not in CRD_GROUPS:
            continue
        (out_dir / f"{crd['metadata']['name']}.yaml").write_text(yaml.safe_dump(crd, sort_keys=False))
        count += 1
    return count


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "extract-crds":
        print("usage: python -m tests.k8s.kube_schemas extract-crds OUT_DIR FILE...", file=sys.stderr)
        return 2
    count = extract_crds(Path(argv[1]), [Path(a) for a in argv[2:]])
    print(f"{count} CRDs written to {argv[1]}")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
