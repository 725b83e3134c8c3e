#!/usr/bin/env python3
"""Validates every filter configuration in the given example files against the JSON Schema.

The configurations are found where users put them:
- Envoy configs (YAML): each `configuration` that is a `google.protobuf.StringValue`, whose
  `value` is the filter's JSON;
- Istio `WasmPlugin`: `spec.pluginConfig`;
- Envoy Gateway `EnvoyExtensionPolicy`: `spec.wasm[].config`;
- the ready-made identity-provider configs (`envoy/idp/*.json`): `configuration`, next to the
  `cluster` that reaches the provider.

A file in which no configuration is found fails too: an example must not pass by being empty.
Kubernetes manifests are also checked for the fields they must carry (API version, the image,
failing closed, …), and with `--envoy-template T --out DIR` each configuration found in one is
written into a copy of the Envoy config T (replacing its filter configuration), for
`envoy --mode validate` to run the filter's own configuration check on it.

Usage: scripts/check_examples.py [--schema S] [--envoy-template T --out DIR] FILE...
"""

import argparse
import json
import os
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
        elif isinstance(configuration, dict) and isinstance(node.get("cluster"), dict):
            yield f"{path}.configuration", configuration
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


# What each kind of manifest must carry: a dotted path (`[i]` indexes a list), and the value it
# must have (None: present), or a prefix it must start with (a str ending in `…`).
REQUIRED = {
    "WasmPlugin": [
        ("apiVersion", "extensions.istio.io/v1alpha1"),
        ("metadata.name", None),
        ("spec.url", "oci://…"),
        ("spec.phase", "AUTHN"),
        ("spec.failStrategy", "FAIL_CLOSE"),
        ("spec.match[0].mode", "SERVER"),
        ("spec.pluginConfig", None),
    ],
    "EnvoyExtensionPolicy": [
        ("apiVersion", "gateway.envoyproxy.io/v1alpha1"),
        ("metadata.name", None),
        ("spec.targetRefs[0].kind", None),
        ("spec.wasm[0].code.type", "Image"),
        ("spec.wasm[0].code.image.url", None),
        ("spec.wasm[0].failOpen", False),
        ("spec.wasm[0].config", None),
    ],
}


def at(node, path):
    for part in path.replace("[", ".[").split("."):
        if part.startswith("["):
            index = int(part[1:-1])
            node = node[index] if isinstance(node, list) and index < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def manifest_problems(document):
    """What a Kubernetes manifest of a kind in REQUIRED lacks."""
    problems = []
    for path, expected in REQUIRED.get(document.get("kind"), []):
        value = at(document, path)
        if value is None:
            problems.append(f"{path} is missing")
        elif isinstance(expected, str) and expected.endswith("…"):
            if not str(value).startswith(expected[:-1]):
                problems.append(f"{path} is {value!r}, not {expected}")
        elif expected is not None and value != expected:
            problems.append(f"{path} is {value!r}, not {expected!r}")
    return problems


def write_envoy_check(template, out, name, index, configuration, cluster=None):
    """A copy of the Envoy config `template` whose filter configuration is `configuration`
    (and with `cluster` added, the one a ready-made provider config names)."""
    with open(template) as source:
        bootstrap = yaml.safe_load(source)
    if cluster is not None:
        bootstrap["static_resources"]["clusters"].append(cluster)
    replaced = 0

    def replace(node):
        nonlocal replaced
        if isinstance(node, dict):
            value = node.get("configuration")
            if isinstance(value, dict) and value.get("@type") == STRING_VALUE:
                value["value"] = json.dumps(configuration)
                replaced += 1
            for child in node.values():
                replace(child)
        elif isinstance(node, list):
            for child in node:
                replace(child)

    replace(bootstrap)
    assert replaced == 1, f"{template}: {replaced} filter configurations, expected 1"
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{os.path.splitext(os.path.basename(name))[0]}-{index}.yaml")
    with open(path, "w") as target:
        yaml.safe_dump(bootstrap, target)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", default="schema/config.schema.json")
    parser.add_argument("--envoy-template", help="an Envoy config to copy for each manifest's configuration")
    parser.add_argument("--out", help="where those copies go")
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
        for document in documents:
            for problem in manifest_problems(document):
                print(f"check-examples: {name} {document.get('kind')}: {problem}", file=sys.stderr)
                failed = True
        if arguments.envoy_template and arguments.out:
            clusters = [document.get("cluster") for document in documents if isinstance(document, dict)]
            cluster = clusters[0] if len(clusters) == 1 else None
            for index, (_, configuration) in enumerate(found):
                print(write_envoy_check(arguments.envoy_template, arguments.out, name, index, configuration, cluster))
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
