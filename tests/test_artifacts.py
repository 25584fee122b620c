"""The artifact store on the local filesystem and on a real S3-compatible server (SeaweedFS) via boto3."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from readnext import artifacts

S3_PORT = 18333


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory, monkeypatch_module):
    """`weed server -s3` on 127.0.0.1, with throwaway credentials for boto3."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    folder = tmp_path_factory.mktemp("seaweed")
    log = (folder / "weed.log").open("wb")
    proc = subprocess.Popen(
        [
            weed,
            "server",
            f"-dir={folder}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.port={S3_PORT}",
            "-master.port=19333",
            "-volume.port=18080",
            "-filer.port=18888",
            "-volume.max=5",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{S3_PORT}"
    monkeypatch_module.setenv("AWS_ACCESS_KEY_ID", "readnext")
    monkeypatch_module.setenv("AWS_SECRET_ACCESS_KEY", "readnext-secret")
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=endpoint, config=BotoConfig(retries={"max_attempts": 1}))
    deadline = time.monotonic() + 90
    while True:  # ready once its master, volume and filer all are: creating a bucket works
        try:
            client.create_bucket(Bucket="readnext-models")
            break
        except (BotoCoreError, ClientError):
            assert proc.poll() is None, f"weed exited; see {folder / 'weed.log'}"
            assert time.monotonic() < deadline, f"SeaweedFS S3 did not become ready; see {folder / 'weed.log'}"
            time.sleep(0.5)
    yield endpoint
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


@pytest.fixture(params=["file", "s3"])
def store_config(request, config, tmp_path):
    if request.param == "file":
        uri, endpoint = (tmp_path / "store").as_uri(), ""
    else:
        uri, endpoint = f"s3://readnext-models/{tmp_path.name}", request.getfixturevalue("seaweed")
    return dataclasses.replace(config, artifacts=dataclasses.replace(config.artifacts, uri=uri, s3_endpoint=endpoint))


def test_generations_publish_flip_load_and_delete(store_config):
    store = artifacts.open_store(store_config)
    assert artifacts.current_generation(store) is None
    rng = np.random.default_rng(0)
    ids, factors = np.array([3, 1, 2]), rng.normal(size=(3, 4)).astype(np.float32)
    artifacts.publish_generation(store, "20260101T000000000Z", ids, factors, {"metrics": {"ndcg@10": 0.3}})
    assert artifacts.current_generation(store) is None, "publishing does not flip the pointer"
    artifacts.publish_generation(store, "20260102T000000000Z", ids[:2], factors[:2], {})
    artifacts.set_current(store, "20260102T000000000Z")
    assert artifacts.current_generation(store) == "20260102T000000000Z"
    assert artifacts.list_generations(store) == ["20260101T000000000Z", "20260102T000000000Z"]
    got_ids, got_factors, manifest = artifacts.load_generation(store, "20260101T000000000Z")
    assert got_ids.tolist() == [3, 1, 2] and np.array_equal(got_factors, factors)
    assert manifest == {"metrics": {"ndcg@10": 0.3}} == artifacts.load_manifest(store, "20260101T000000000Z")
    artifacts.delete_generation(store, "20260101T000000000Z")
    assert artifacts.list_generations(store) == ["20260102T000000000Z"]
    with pytest.raises(FileNotFoundError, match="20260101T000000000Z lacks"):
        artifacts.load_generation(store, "20260101T000000000Z")


def test_unsupported_scheme_is_refused(config):
    bad = dataclasses.replace(config, artifacts=dataclasses.replace(config.artifacts, uri="hdfs://nn/models"))
    with pytest.raises(ValueError, match="unsupported scheme 'hdfs'"):
        artifacts.open_store(bad)
