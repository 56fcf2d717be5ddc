"""Where the group tasks of a Spark recovery leave their parts when the driver cannot see the executors' disks.

By default the tasks write their parts (comparison, truth and originals, Arrow IPC) into the work directory
next to ``--out``, which on a cluster must be a file system every executor and the driver share. With
``--spark-parts LOCATION`` each task writes its parts to its own scratch disk, then copies them under a
prefix of its own run in ``LOCATION``: a shared directory, or an object-storage URL (``s3://``, ``gs://``,
``abfs://``, ``hdfs://``: any file system pyarrow opens). The driver copies them back into its work
directory, where the fix set is built from them as from local parts, and deletes the run's prefix.

S3 is reached with the driver's ``AWS_*`` settings (credentials, region, ``AWS_ENDPOINT_URL`` for an
S3-compatible store), shipped with the tasks like the Kafka settings, so executors need no environment of
their own; the other schemes use the executors' own credentials (instance roles, ``GOOGLE_APPLICATION_...``).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recovery.errors import ConfigError

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# the AWS settings S3 needs, read on the driver and shipped with the tasks
_AWS = {
    "AWS_ACCESS_KEY_ID": "access_key",
    "AWS_SECRET_ACCESS_KEY": "secret_key",
    "AWS_SESSION_TOKEN": "session_token",
    "AWS_DEFAULT_REGION": "region",
    "AWS_REGION": "region",  # after AWS_DEFAULT_REGION: the more specific setting wins
    "AWS_ENDPOINT_URL": "endpoint_override",
    "AWS_ENDPOINT_URL_S3": "endpoint_override",  # after AWS_ENDPOINT_URL, as above
}


def scheme_of(location: str) -> str:
    """The URL scheme of ``location`` (``s3``, ``gs``, ...), ``file`` for a plain path."""
    found = _URL.match(location)
    return found.group(1).lower() if found else "file"


@dataclass(frozen=True)
class RemoteParts:
    """One run's prefix in a shared location; picklable, so the tasks carry it with their job."""

    url: str  # the run's own prefix: <location>/recover-parts-<id>
    settings: Mapping[str, str] = field(default_factory=dict)  # s3: the driver's AWS_* settings

    @classmethod
    def under(cls, location: str, environ: Mapping[str, str] | None = None) -> RemoteParts:
        """A new prefix of its own under ``location`` (a path or URL), with the driver's settings for it."""
        env = os.environ if environ is None else environ
        settings = {k: env[k] for k in _AWS if env.get(k)} if scheme_of(location) == "s3" else {}
        local = scheme_of(location) == "file"
        base = str(Path(location.removeprefix("file://")).absolute()) if local else location.rstrip("/")
        return cls(f"{base}/recover-parts-{uuid.uuid4().hex[:12]}", settings)

    def filesystem(self) -> tuple[Any, str]:
        """The pyarrow file system and the prefix's path in it."""
        import pyarrow.fs as pafs

        if scheme_of(self.url) == "s3" and self.settings:
            options = {_AWS[k]: v for k, v in self.settings.items() if k in _AWS}
            path = self.url.split("://", 1)[1]
            return pafs.S3FileSystem(**options), path
        if scheme_of(self.url) == "file":
            return pafs.LocalFileSystem(), self.url
        return pafs.FileSystem.from_uri(self.url)

    def check(self) -> None:
        """Write and delete a probe under the prefix (nothing is left); :class:`ConfigError` saying what to fix
        when it fails."""
        try:
            fs, path = self.filesystem()
            fs.create_dir(path, recursive=True)
            with fs.open_output_stream(f"{path}/.probe") as out:
                out.write(b"recovery")
            fs.delete_dir(path)
        except Exception as exc:  # pyarrow raises OSError, ValueError or ArrowInvalid, per file system
            raise ConfigError(
                f"cannot write the Spark parts to {self.url}: {_first_line(exc)}",
                hint="check --spark-parts (an existing bucket or a directory every executor shares) and its "
                "credentials (AWS_* for s3://)",
            ) from exc

    def upload(self, paths: Iterable[str]) -> list[str]:
        """Copy local files under the prefix (the same names); their URLs, in the same order."""
        import pyarrow.fs as pafs

        fs, prefix = self.filesystem()
        fs.create_dir(prefix, recursive=True)
        urls = []
        for local in paths:
            name = Path(local).name
            pafs.copy_files(local, f"{prefix}/{name}", destination_filesystem=fs)
            urls.append(f"{self.url}/{name}")
        return urls

    def download(self, urls: Iterable[str], into: Path) -> list[str]:
        """Copy parts written under the prefix into the local directory ``into``; the local paths, in order."""
        import pyarrow.fs as pafs

        fs, prefix = self.filesystem()
        paths = []
        for url in urls:
            name = url.rsplit("/", 1)[1]
            pafs.copy_files(f"{prefix}/{name}", str(into / name), source_filesystem=fs)
            paths.append(str(into / name))
        return paths

    def delete(self, urls: Iterable[str]) -> None:
        """Delete parts under the prefix (a group recovered again)."""
        fs, prefix = self.filesystem()
        for url in urls:
            fs.delete_file(f"{prefix}/{url.rsplit('/', 1)[1]}")

    def remove(self) -> None:
        """Delete the prefix and everything under it (best effort: a left prefix is only scratch)."""
        try:
            fs, prefix = self.filesystem()
            fs.delete_dir(prefix)
        except Exception:  # noqa: BLE001, S110 - nothing to tell the user: the recovery itself is done
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
