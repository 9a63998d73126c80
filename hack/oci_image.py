#!/usr/bin/env python3
"""Writes an OCI image archive without a container engine: one layer holding the given files,
a config (entrypoint, user, env, labels) and a manifest, in the OCI image layout that
`ctr images import` reads. Deterministic: the same inputs give the same digests.

    hack/oci_image.py --name docker.io/library/mcp-fixture:v1 --out mcp-fixture-v1.tar \
        --entrypoint /usr/local/bin/mcp-fixture --user 65532:65532 \
        --file target/release/mcp-fixture:/usr/local/bin/mcp-fixture \
        --libs-of target/release/mcp-fixture

`--libs-of BIN` adds the shared libraries BIN loads (as `ldd` lists them, at the same paths),
so a dynamically linked binary runs in an image with no distribution in it: no shell, no
package manager, only the binary, its loader and its libraries (what distroless images hold).
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

EPOCH = 0  # every file's mtime: reproducible layers


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def shared_libraries(binary: str) -> list[str]:
    """The libraries the dynamic loader maps for `binary`, and the loader itself."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if "not a dynamic executable" in out.stdout + out.stderr or "statically linked" in out.stdout:
        return []
    if out.returncode != 0:
        sys.exit(f"oci_image: ldd {binary}: {out.stderr.strip()}")
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])  # the loader: /lib64/ld-linux-x86-64.so.2
    return libs


def add_dirs(tar: tarfile.TarFile, path: str, seen: set[str]) -> None:
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d in seen:
            continue
        seen.add(d)
        info = tarfile.TarInfo(d)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.mtime = EPOCH
        tar.addfile(info)


def add_file(tar: tarfile.TarFile, source: str, dest: str, seen: set[str]) -> None:
    dest = dest.lstrip("/")
    if dest in seen:
        return
    add_dirs(tar, dest, seen)
    seen.add(dest)
    real = os.path.realpath(source)
    with open(real, "rb") as f:
        data = f.read()
    info = tarfile.TarInfo(dest)
    info.size = len(data)
    info.mode = os.stat(real).st_mode & 0o755 | 0o444
    info.mtime = EPOCH
    tar.addfile(info, io.BytesIO(data))


def layer(files: list[tuple[str, str]], extra_dirs: list[tuple[str, int]]) -> bytes:
    buffer = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, uid in extra_dirs:
            add_dirs(tar, path.rstrip("/"), seen)
            info = tarfile.TarInfo(path.strip("/"))
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if uid == 0 else 0o755
            info.uid = info.gid = uid
            info.mtime = EPOCH
            if info.name not in seen:
                seen.add(info.name)
                tar.addfile(info)
        for source, dest in sorted(files, key=lambda f: f[1]):
            add_file(tar, source, dest, seen)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="full reference, e.g. docker.io/library/x:v1")
    parser.add_argument("--out", required=True)
    parser.add_argument("--entrypoint", required=True, nargs="+")
    parser.add_argument("--cmd", nargs="*", default=[])
    parser.add_argument("--user", default="65532:65532")
    parser.add_argument("--workdir", default="/")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--file", action="append", default=[], help="SOURCE:DEST")
    parser.add_argument("--libs-of", action="append", default=[], help="add the shared libraries of BIN")
    parser.add_argument("--dir", action="append", default=[], help="an empty directory DEST[:UID]")
    args = parser.parse_args()

    files = []
    for spec in args.file:
        source, _, dest = spec.partition(":")
        if not dest:
            sys.exit(f"oci_image: --file {spec}: want SOURCE:DEST")
        files.append((source, dest))
    for binary in args.libs_of:
        files.extend((lib, lib) for lib in shared_libraries(binary))
    dirs = []
    for spec in args.dir:
        path, _, uid = spec.partition(":")
        dirs.append((path, int(uid or 0)))
    # /tmp, as every image has, writable by anyone (sticky).
    dirs.append(("/tmp", 0))

    layer_tar = layer(files, dirs)
    diff_id = sha256(layer_tar)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Entrypoint": args.entrypoint,
            "Cmd": args.cmd or None,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", *args.env],
            "WorkingDir": args.workdir,
            "Labels": {"org.opencontainers.image.source": "https://github.com/mcp-rollout/mcp-rollout"},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "hack/oci_image.py", "created": "1970-01-01T00:00:00Z"}],
    }
    if config["config"]["Cmd"] is None:
        del config["config"]["Cmd"]
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": diff_id,
                "size": len(layer_tar),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }

    blobs = [layer_tar, config_bytes, manifest_bytes]
    with tarfile.open(args.out, mode="w", format=tarfile.PAX_FORMAT) as out:

        def put(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = EPOCH
            out.addfile(info, io.BytesIO(data))

        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", json.dumps(index, sort_keys=True).encode())
        for blob in blobs:
            put("blobs/sha256/" + sha256(blob).split(":", 1)[1], blob)
    print(f"{args.name} {sha256(manifest_bytes)} {len(layer_tar) // 1024} KiB -> {args.out}")


if __name__ == "__main__":
    main()
