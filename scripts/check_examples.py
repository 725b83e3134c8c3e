#!/usr/bin/env python3
"""Validates every filter configuration in the given example files against the JSON Schema.

The configurations are found where users put them:
- Envoy configs (YAML): each `configuration` that is a `google.protobuf.StringValue`, whose
  `value` is the filter's JSON;
- Istio `WasmPlugin`: `spec.pluginConfig`;
- Envoy Gateway `EnvoyExtensionPolicy`: `spec.wasm[].config`.

A file in which no configuration is found fails too: an example must not pass by being empty.

Usage: scripts/check_examples.py [--schema schema/config.schema.json] FILE...
"""

import argparse
import json
import sys

import jsonschema
import yaml

STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


def configurations(node, path="$"):
    """Yields (where, configuration) for every filter configuration inside a YAML document."""
    if isinstance(node, dict):
        configuration = node.get("configuration")
        if isinstance(configuration, dict) and configuration.get("@type") == STRING_VALUE:
            yield f"{path}.configuration", json.loads(configuration["value"])
        if node.get("kind") == "WasmPlugin" and isinstance(node.get("spec"), dict):
            yield f"{path}.spec.pluginConfig", node["spec"].get("pluginConfig")
        if node.get("kind") == "EnvoyExtensionPolicy" and isinstance(node.get("spec"), dict):
            for index, wasm in enumerate(node["spec"].get("wasm") or []):
                yield f"{path}.spec.wasm[{index}].config", wasm.get("config")
        for key, value in node.items():
            if key != "configuration":
                yield from configurations(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from configurations(item, f"{path}[{index}]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", default="schema/config.schema.json")
    parser.add_argument("files", nargs="+")
    arguments = parser.parse_args()
    with open(arguments.schema) as schema_file:
        schema = json.load(schema_file)
    validator = jsonschema.Draft202012Validator(schema)
    failed = False
    for name in arguments.files:
        with open(name) as example:
            documents = [document for document in yaml.safe_load_all(example) if document is not None]
        found = [found for document in documents for found in configurations(document)]
        if not found:
            print(f"check-examples: {name}: no filter configuration found", file=sys.stderr)
            failed = True
        for where, configuration in found:
            errors = sorted(validator.iter_errors(configuration), key=lambda error: list(error.path))
            for error in errors:
                field = "/".join(str(part) for part in error.absolute_path)
                print(f"check-examples: {name} {where}: /{field}: {error.message}", file=sys.stderr)
            failed |= bool(errors)
        if found and not failed:
            print(f"check-examples: {name}: {len(found)} configuration(s) match the schema")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
