#!/usr/bin/env python3
"""Offline checks of crds/ and examples/ with tools outside the Rust code that generates them.

1. Every CRD is a valid apiextensions.k8s.io/v1 CustomResourceDefinition for the oldest and the
   newest Kubernetes version we support (kubernetes-validate, strict: unknown fields fail).
2. Every McpRollout example validates against the CRD's openAPIV3Schema, read as JSON Schema by
   the `jsonschema` package, with unknown fields rejected as `kubectl apply --validate=strict`
   does. This is a second, independent reader of the schema next to the Rust tests.
"""
import copy
import glob
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def to_json_schema(node):
    """OpenAPI v3 (Kubernetes structural schema) -> JSON Schema the jsonschema package reads."""
    node = copy.deepcopy(node)
    for key in ("x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
                "x-kubernetes-map-type", "x-kubernetes-embedded-resource"):
        node.pop(key, None)
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node:
        node["properties"] = {k: to_json_schema(v) for k, v in node["properties"].items()}
        if not preserve and "additionalProperties" not in node:
            node["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = to_json_schema(node["additionalProperties"])
    if "items" in node:
        node["items"] = to_json_schema(node["items"])
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    if node.get("format") in ("int32", "int64", "double", "date-time"):
        node.pop("format")
    return node


def main():
    failures = 0
    crd_files = sorted(glob.glob(str(ROOT / "crds" / "*.yaml")))
    if not crd_files:
        print("no CRDs found under crds/", file=sys.stderr)
        return 1
    for version in KUBERNETES_VERSIONS:
        cmd = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, *crd_files]
        result = subprocess.run(cmd, capture_output=True, text=True)
        print(f"kubernetes-validate {version}: {'ok' if result.returncode == 0 else 'FAILED'} ({len(crd_files)} file(s))")
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            failures += 1

    schemas = {}
    for path in crd_files:
        for crd in load_all(path):
            for v in crd["spec"]["versions"]:
                key = (f'{crd["spec"]["group"]}/{v["name"]}', crd["spec"]["names"]["kind"])
                schema = to_json_schema(v["schema"]["openAPIV3Schema"])
                # apiVersion, kind and metadata are checked by the API server itself.
                schema["properties"]["metadata"] = {"type": "object"}
                schema["properties"]["apiVersion"] = {"type": "string"}
                schema["properties"]["kind"] = {"type": "string"}
                schemas[key] = schema

    checked = 0
    for path in sorted(glob.glob(str(ROOT / "examples" / "**" / "*.yaml"), recursive=True)):
        for doc in load_all(path):
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key not in schemas:
                continue
            checked += 1
            errors = sorted(jsonschema.Draft7Validator(schemas[key]).iter_errors(doc), key=lambda e: list(e.path))
            for error in errors:
                where = ".".join(str(p) for p in error.path)
                print(f"{Path(path).relative_to(ROOT)}: {where}: {error.message}", file=sys.stderr)
                failures += 1
    print(f"examples: {checked} custom resource(s) checked against the CRD schemas")
    if checked == 0:
        print("no examples were checked", file=sys.stderr)
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
