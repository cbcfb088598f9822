"""Where the shared cache keeps its files: a folder every machine mounts (`cluster.store: PATH`),
or an S3-compatible bucket (`cluster.store: s3://BUCKET/PREFIX`, through boto3; credentials from
its usual chain: AWS_ACCESS_KEY_ID…, ~/.aws; `cluster.s3_endpoint_url` for MinIO, Ceph, R2…).

Objects are named `<key[:2]>/<key><suffix>`. `put` is atomic (a folder: temporary name, then a
rename; S3: a single PUT), so a reader never sees half an object.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ara_sidecar.cache.store import CacheUnwritable
from ara_sidecar.config import Settings
from ara_sidecar.errors import UserError

TEMP_PREFIX = ".tmp-"
BLOCK = 1 << 20
S3_HINT = "pip install 'ara-avatar[cluster,s3]'"


class Blobs(Protocol):
    location: str  # the folder or s3:// URL, as shown by `cache stats`

    def put(self, name: str, source: Path) -> None: ...
    def fetch(self, name: str, dest: Path) -> str: ...  # copy; returns the SHA-256; FileNotFoundError
    def sha256(self, name: str) -> str | None: ...
    def delete(self, name: str) -> None: ...
    def listing(self) -> Iterator[tuple[str, float]]: ...  # (name, modification time) of each object


def open_blobs(settings: Settings) -> Blobs:
    store = settings.cluster.store
    assert store is not None
    if store.startswith("s3://"):
        return S3Blobs(store, settings.cluster.s3_endpoint_url)
    return FolderBlobs(settings.path(Path(store)))


def _copy(src: BinaryIO, dst: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: src.read(BLOCK), b""):
        digest.update(block)
        dst.write(block)
    return digest.hexdigest()


class FolderBlobs:
    """A folder (local, or a network mount every machine shares)."""

    def __init__(self, root: Path):
        self.root = root
        self.location = str(root)
        self._objects = root / "objects"
        self._objects.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, source: Path) -> None:
        final = self._objects / name
        tmp = final.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, BLOCK)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            with suppress(OSError):
                tmp.unlink()
            raise _unwritable(self.location, exc) from exc

    def fetch(self, name: str, dest: Path) -> str:
        with open(self._objects / name, "rb") as src, open(dest, "wb") as dst:
            return _copy(src, dst)

    def sha256(self, name: str) -> str | None:
        try:
            with open(self._objects / name, "rb") as src:
                digest = hashlib.sha256()
                for block in iter(lambda: src.read(BLOCK), b""):
                    digest.update(block)
                return digest.hexdigest()
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        with suppress(FileNotFoundError):
            (self._objects / name).unlink()

    def listing(self) -> Iterator[tuple[str, float]]:
        for path in self._objects.glob("*/*"):
            with suppress(OSError):
                yield f"{path.parent.name}/{path.name}", path.stat().st_mtime


class S3Blobs:
    """A bucket (and prefix) of an S3-compatible object store, through boto3."""

    def __init__(self, url: str, endpoint_url: str | None):
        try:
            import boto3
        except ImportError:
            raise UserError(f"cluster.store {url} needs boto3: {S3_HINT}") from None
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise UserError(f"bad cluster.store {url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
        self.location = url
        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = boto3.client("s3", endpoint_url=endpoint_url)

    def put(self, name: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self.prefix + name)

    def fetch(self, name: str, dest: Path) -> str:
        body = self._get(name)
        with open(dest, "wb") as dst:
            return _copy(body, dst)

    def sha256(self, name: str) -> str | None:
        try:
            body = self._get(name)
        except FileNotFoundError:
            return None
        digest = hashlib.sha256()
        for block in iter(lambda: body.read(BLOCK), b""):
            digest.update(block)
        return digest.hexdigest()

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + name)

    def listing(self) -> Iterator[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix) :], item["LastModified"].timestamp()

    def _get(self, name: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(name) from None
            raise


def _unwritable(location: str, exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return CacheUnwritable(f"the shared store {location} is full: {exc.strerror}")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return CacheUnwritable(f"the shared store {location} is read-only: {exc.strerror}")
    return exc
