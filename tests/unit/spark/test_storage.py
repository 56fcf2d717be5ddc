"""Parts under a shared location: the run's own prefix, the AWS settings shipped for S3, copies both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery.errors import ConfigError
from recovery.spark.storage import RemoteParts, scheme_of


def test_scheme_of_paths_and_urls() -> None:
    assert [
        scheme_of(x) for x in ("/mnt/shared", "rel/dir", "file:///mnt/x", "s3://b/p", "GS://b", "abfs://c@a/p")
    ] == [
        "file",
        "file",
        "file",
        "s3",
        "gs",
        "abfs",
    ]


def test_each_run_has_a_prefix_of_its_own_and_s3_carries_the_drivers_aws_settings() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-central-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_PROFILE": "not-shipped",
        "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
    }
    a, b = RemoteParts.under("s3://bucket/scratch/", env), RemoteParts.under("s3://bucket/scratch", env)
    assert a.url.startswith("s3://bucket/scratch/recover-parts-") and a.url != b.url
    assert dict(a.settings) == {k: env[k] for k in env if k not in ("AWS_PROFILE", "KAFKA_BOOTSTRAP_SERVERS")}
    fs, path = a.filesystem()
    assert type(fs).__name__ == "S3FileSystem" and fs.region == "eu-central-1"  # AWS_REGION wins
    assert path == a.url.removeprefix("s3://")
    assert RemoteParts.under("gs://bucket/x", env).settings == {}  # only S3 reads AWS_*
    assert RemoteParts.under("file:///mnt/shared", env).url.startswith("/mnt/shared/recover-parts-")
    assert RemoteParts.under("rel/dir", env).url.startswith(str(Path.cwd() / "rel" / "dir" / "recover-parts-"))


def test_parts_copied_up_and_back_then_removed(tmp_path: Path) -> None:
    local, back, shared = tmp_path / "task", tmp_path / "driver", tmp_path / "shared"
    for d in (local, back, shared):
        d.mkdir()
    names = ["comparison-b00000-p00001-0000.arrow", "truth-b00000-p00001-0000.arrow"]
    for i, name in enumerate(names):
        (local / name).write_bytes(bytes([i]) * (100 + i))
    remote = RemoteParts.under(str(shared), {})
    remote.check()
    assert not Path(remote.url).exists()  # the probe and its directory are gone
    urls = remote.upload([str(local / n) for n in names])
    assert urls == [f"{remote.url}/{n}" for n in names]
    assert sorted(p.name for p in Path(remote.url).iterdir()) == names
    paths = remote.download(urls, back)
    assert [Path(p).read_bytes() for p in paths] == [(local / n).read_bytes() for n in names]
    remote.delete(urls[:1])
    assert [p.name for p in Path(remote.url).iterdir()] == names[1:]
    remote.remove()
    assert not Path(remote.url).exists() and shared.exists()
    remote.remove()  # twice: nothing left to delete, no error


def test_an_unwritable_location_is_a_config_error_that_names_the_option(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(ConfigError, match=f"cannot write the Spark parts to {blocked}/sub/recover-parts-") as caught:
        RemoteParts.under(str(blocked / "sub"), {}).check()
    assert "--spark-parts" in str(caught.value.hint)
