#!/usr/bin/env python3
"""Renders a config template: replaces each {{NAME}} with the value given as NAME=VALUE, or read
from a file as NAME=@PATH. A file ending in .json is compacted to one line, so a JWKS fits on
the single line of the YAML block scalar that holds the plugin configuration. A placeholder with
no value is an error: an empty string would only fail later, inside Envoy, less clearly.

Usage: render_config.py TEMPLATE OUTPUT NAME=VALUE|NAME=@PATH...
"""
import json
import re
import sys


def value_of(spec):
    if not spec.startswith("@"):
        return spec
    path = spec[1:]
    with open(path, encoding="utf-8") as file:
        text = file.read()
    if path.endswith(".json"):
        return json.dumps(json.loads(text), separators=(",", ":"))
    return text.strip()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    template, output = sys.argv[1], sys.argv[2]
    values = {}
    for argument in sys.argv[3:]:
        name, _, spec = argument.partition("=")
        values[name] = value_of(spec)
    with open(template, encoding="utf-8") as file:
        text = file.read()
    missing = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)) - values.keys())
    if missing:
        sys.exit(f"render_config: {template}: no value for {', '.join(missing)}")
    rendered = re.sub(r"\{\{(\w+)\}\}", lambda match: values[match.group(1)], text)
    with open(output, "w", encoding="utf-8") as file:
        file.write(rendered)


if __name__ == "__main__":
    main()
