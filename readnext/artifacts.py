"""The artifact store: model generations as files, on the local filesystem or in S3 (through boto3).

Layout under the configured URI:
    generations/<generation>/manifest.json      what the generation is (params, metrics, cutoff)
    generations/<generation>/book_factors.npy   float32, one row per book
    generations/<generation>/book_ids.npy       int32, the book id of each row
    CURRENT                                     the id of the generation being served
The CURRENT pointer is written last, so a reader never sees a half-written generation.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np

from readnext.config import PROJECT_ROOT, Config

CURRENT = "CURRENT"


class ArtifactStore(Protocol):
    """Bytes by key; keys are '/'-separated paths relative to the store's root."""

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete_prefix(self, prefix: str) -> None: ...


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, data: bytes) -> None:
        """Write atomically (temporary file, then rename), so readers see old or new, never half."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            (self.root / key).unlink()
        base = self.root / prefix
        for folder in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True) if base.is_dir() else []:
            folder.rmdir()
        if base.is_dir():
            base.rmdir()


class S3Store:
    def __init__(self, bucket: str, prefix: str, endpoint: str | None = None) -> None:
        import boto3

        self.client = boto3.client("s3", endpoint_url=endpoint or None)
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        strip = len(self._key(""))
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})


def open_store(config: Config) -> ArtifactStore:
    """The store named by `[artifacts] uri`: s3://bucket/prefix, file:///path, or a plain path."""
    uri = config.artifacts.uri
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path, config.artifacts.s3_endpoint)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme:
        raise ValueError(f"[artifacts] uri: unsupported scheme {parsed.scheme!r} in {uri!r} (use file:// or s3://)")
    path = Path(uri)
    return LocalStore(path if path.is_absolute() else PROJECT_ROOT / path)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def publish_generation(
    store: ArtifactStore, generation: str, book_ids: np.ndarray, book_factors: np.ndarray, manifest: dict[str, Any]
) -> None:
    """Write a generation's files (not the CURRENT pointer: see `set_current`)."""
    base = f"generations/{generation}"
    store.put(f"{base}/book_ids.npy", _npy(np.asarray(book_ids, dtype=np.int32)))
    store.put(f"{base}/book_factors.npy", _npy(np.asarray(book_factors, dtype=np.float32)))
    store.put(f"{base}/manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())


def begin_generation(store: ArtifactStore, generation: str) -> None:
    """Mark a generation as started before a run writes anything for it: a run that dies leaves this mark."""
    store.put(f"generations/{generation}/started", generation.encode())


def set_current(store: ArtifactStore, generation: str) -> None:
    store.put(CURRENT, generation.encode())


def current_generation(store: ArtifactStore) -> str | None:
    data = store.get(CURRENT)
    return data.decode().strip() if data else None


def load_generation(store: ArtifactStore, generation: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(book ids, book factors, manifest) of a published generation."""
    base = f"generations/{generation}"
    parts = {name: store.get(f"{base}/{name}") for name in ("book_ids.npy", "book_factors.npy", "manifest.json")}
    missing = [name for name, data in parts.items() if data is None]
    if missing:
        raise FileNotFoundError(f"generation {generation} lacks {', '.join(missing)} in the artifact store")
    ids = np.load(io.BytesIO(parts["book_ids.npy"]), allow_pickle=False)
    factors = np.load(io.BytesIO(parts["book_factors.npy"]), allow_pickle=False)
    return ids, factors, json.loads(parts["manifest.json"])


def load_manifest(store: ArtifactStore, generation: str) -> dict[str, Any]:
    """A published generation's manifest alone (what a periodic check needs, without the factors)."""
    data = store.get(f"generations/{generation}/manifest.json")
    if data is None:
        raise FileNotFoundError(f"generation {generation} lacks manifest.json in the artifact store")
    return json.loads(data)


def created_s(manifest: dict[str, Any]) -> float:
    """When the manifest's generation was made, as Unix time."""
    return datetime.fromisoformat(manifest["created_at"]).timestamp()


def age_s(manifest: dict[str, Any]) -> float:
    """How long ago the manifest's generation was made, in seconds."""
    return time.time() - created_s(manifest)


def list_generations(store: ArtifactStore) -> list[str]:
    """Published generation ids, oldest first (ids sort by time)."""
    return sorted({key.split("/")[1] for key in store.list("generations/") if key.count("/") >= 2})


def delete_generation(store: ArtifactStore, generation: str) -> None:
    store.delete_prefix(f"generations/{generation}")
