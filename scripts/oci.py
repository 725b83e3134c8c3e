#!/usr/bin/env python3
"""Packs the filter as an OCI image in the Wasm "compat" variant, as an OCI image layout.

Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy pull Wasm modules from OCI
registries. The compat variant (solo-io/wasm spec-compat) is an ordinary image: one layer, a
tar+gzip holding `plugin.wasm`, and the manifest annotation `module.wasm.image/variant=compat`.
No Docker engine is needed: this writes the layout directory itself, and `skopeo` copies it to
a registry (`skopeo copy oci:DIR:TAG docker://HOST/REPO:TAG`).

The image is reproducible: the same module gives the same digests (tar entry with mode 0644,
owner 0, time 0; gzip without a name or time).

Usage:
  scripts/oci.py build --wasm PATH --out DIR --tag TAG [--revision REV] [--version VERSION]
prints the manifest digest (`sha256:…`) on stdout.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(module: bytes) -> bytes:
    """A tar with one entry, `plugin.wasm`, whose metadata depends on nothing but the module."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        entry = tarfile.TarInfo("plugin.wasm")
        entry.size = len(module)
        entry.mode = 0o644
        entry.mtime = 0
        entry.uid = entry.gid = 0
        entry.uname = entry.gname = ""
        tar.addfile(entry, io.BytesIO(module))
    return buffer.getvalue()


def write_blob(layout: str, data: bytes) -> dict:
    name = digest(data)
    path = os.path.join(layout, "blobs", "sha256", name.split(":", 1)[1])
    with open(path, "wb") as blob:
        blob.write(data)
    return {"digest": name, "size": len(data)}


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def build(wasm: str, out: str, tag: str, revision: str, version: str) -> str:
    with open(wasm, "rb") as module_file:
        module = module_file.read()
    if not module.startswith(b"\0asm"):
        sys.exit(f"oci: {wasm} is not a Wasm module")
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "blobs", "sha256"))

    tar = layer_tar(module)
    # gzip.compress with mtime=0 writes no file name and no time: the bytes depend on the tar only.
    layer = write_blob(out, gzip.compress(tar, compresslevel=9, mtime=0))
    layer["mediaType"] = LAYER_MEDIA_TYPE
    config = write_blob(
        out,
        canonical_json(
            {
                # The platform of a WASI preview 1 module (Istio and Envoy Gateway ignore it).
                "architecture": "wasm",
                "os": "wasip1",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [digest(tar)]},
            }
        ),
    )
    config["mediaType"] = CONFIG_MEDIA_TYPE
    annotations = {
        "module.wasm.image/variant": "compat",
        "org.opencontainers.image.title": "wasm-jwt-authn",
        "org.opencontainers.image.description": "JWT authentication and zero-trust authorization for Envoy and proxy-wasm hosts",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    manifest_bytes = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config,
            "layers": [layer],
            "annotations": annotations,
        }
    )
    manifest = write_blob(out, manifest_bytes)
    manifest["mediaType"] = MANIFEST_MEDIA_TYPE
    manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(out, "index.json"), "wb") as index:
        index.write(
            canonical_json(
                {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest]}
            )
        )
    with open(os.path.join(out, "oci-layout"), "wb") as marker:
        marker.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return manifest["digest"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="write the OCI image layout")
    build_command.add_argument("--wasm", required=True, help="the module to pack")
    build_command.add_argument("--out", required=True, help="the layout directory (replaced)")
    build_command.add_argument("--tag", required=True, help="the tag in index.json (ref.name)")
    build_command.add_argument("--revision", default="unknown", help="the source revision")
    build_command.add_argument("--version", default="0.0.0", help="the release version")
    arguments = parser.parse_args()
    if arguments.command == "build":
        print(build(arguments.wasm, arguments.out, arguments.tag, arguments.revision, arguments.version))


if __name__ == "__main__":
    main()
