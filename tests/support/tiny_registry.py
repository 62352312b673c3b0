"""A throw-away image registry on 127.0.0.1, serving one local image, slowly.

The engine pulls from it like from any registry (the daemon trusts 127.0.0.0/8 over plain
HTTP), so a real `docker compose up` shows real pull progress events without the network.
Blobs are sent in small timed chunks, so the daemon reports several "Downloading" steps.
Only what a pull needs is served: GET /v2/, the manifest, and the blobs.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _one_file_tar(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def image_blobs(image: str, workdir: Path, extra_bytes: int = 1_500_000) -> tuple[bytes, dict[str, bytes]]:
    """(manifest, digest -> blob) of a local image, from `docker save`."""
    archive = workdir / "image.tar"
    subprocess.run(["docker", "save", image, "-o", str(archive)], check=True, capture_output=True)
    with tarfile.open(archive) as tar:
        saved = json.load(tar.extractfile("manifest.json"))[0]
        config = tar.extractfile(saved["Config"]).read()
        layers = [gzip.compress(tar.extractfile(name).read(), mtime=0) for name in saved["Layers"]]
    # A layer the engine has never seen (random bytes do not compress), so it is downloaded
    # for real instead of being reported as "Already exists"; the config names it, so the
    # image is a new one too (an image the engine holds is not pulled at all).
    extra = _one_file_tar("pulled.bin", os.urandom(extra_bytes))
    layers.append(gzip.compress(extra, mtime=0))
    model = json.loads(config)
    model["rootfs"]["diff_ids"].append(_digest(extra))
    model.setdefault("history", []).append({"created_by": "tiny_registry: a layer to download"})
    config = json.dumps(model).encode()
    blobs = {_digest(config): config, **{_digest(layer): layer for layer in layers}}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": _digest(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": _digest(layer)} for layer in layers],
    }).encode()
    return manifest, blobs


class TinyRegistry:
    """`with TinyRegistry("busybox-test:local", tmp) as reg:` then pull `reg.ref("x/y:1")`."""

    def __init__(self, image: str, workdir: Path, chunk: int = 64 * 1024, pause: float = 0.05) -> None:
        self.manifest, self.blobs = image_blobs(image, workdir)
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the recorder prints what matters
                pass

            def _send(self, body: bytes, content_type: str, slowly: bool = False) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Content-Digest", _digest(body))
                self.end_headers()
                if self.command == "HEAD":
                    return
                step = chunk if slowly else len(body) or 1
                for start in range(0, len(body), step):
                    self.wfile.write(body[start:start + step])
                    self.wfile.flush()
                    if slowly:
                        time.sleep(pause)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/v2/":
                    return self._send(b"{}", "application/json")
                if "/manifests/" in path:
                    return self._send(registry.manifest, MANIFEST)
                if "/blobs/" in path:
                    blob = registry.blobs.get(path.rsplit("/", 1)[1])
                    if blob is not None:
                        return self._send(blob, "application/octet-stream", slowly=len(blob) > chunk)
                self.send_error(404)

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def ref(self, name: str) -> str:
        return f"127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> "TinyRegistry":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
