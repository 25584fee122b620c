"""The Spark driver's class-data archive: one dumper at a time, adopted once finished, mapped by a real JVM."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pyspark

from readnext import class_archive

SPARK_JARS = Path(pyspark.__file__).parent / "jars"
DEAD_PID = 2**22 + 1  # above the kernel's pid_max default: never a live process


def test_a_changed_class_path_gets_an_archive_of_its_own(tmp_path):
    jar = tmp_path / "client.jar"
    jar.write_bytes(b"one")
    first = class_archive.archive_path(tmp_path, str(jar))
    assert class_archive.archive_path(tmp_path, str(jar)) == first
    jar.write_bytes(b"two, longer")
    assert class_archive.archive_path(tmp_path, str(jar)) != first
    assert class_archive.archive_path(tmp_path, "") != class_archive.archive_path(tmp_path, str(jar))


def test_one_application_dumps_and_the_others_wait_for_it(tmp_path):
    archive = class_archive.archive_path(tmp_path, "")
    first = class_archive.java_options(tmp_path, "")
    assert first[0] == f"-XX:ArchiveClassesAtExit={archive}.{os.getpid()}.tmp"
    assert class_archive.java_options(tmp_path, "") == []  # this process (the dumper) still runs


def test_only_a_settled_dump_of_a_finished_process_is_adopted(tmp_path):
    archive = tmp_path / "spark-classes-x.jsa"
    settled = tmp_path / f"{archive.name}.{DEAD_PID}.tmp"
    fresh = tmp_path / f"{archive.name}.{DEAD_PID + 1}.tmp"
    settled.write_bytes(class_archive.DYNAMIC_MAGIC + b"settled")
    fresh.write_bytes(class_archive.DYNAMIC_MAGIC + b"fresh")
    cut_short = tmp_path / f"{archive.name}.{DEAD_PID + 2}.tmp"
    cut_short.write_bytes(bytes(64))  # a JVM killed before it wrote the header
    for dump in (settled, cut_short):
        os.utime(dump, (time.time() - class_archive.SETTLE_S, time.time() - class_archive.SETTLE_S))
    assert class_archive.adopt_dumps(archive) is True  # the fresh one may still be being written
    assert archive.read_bytes() == class_archive.DYNAMIC_MAGIC + b"settled" and fresh.exists()
    assert not cut_short.exists()
    assert class_archive.adopt_dumps(archive, now=time.time() + class_archive.SETTLE_S) is False
    assert archive.read_bytes() == class_archive.DYNAMIC_MAGIC + b"settled"
    assert list(tmp_path.glob("*.tmp")) == []


def _java(options: list[str], class_path: str) -> subprocess.CompletedProcess[str]:
    """Hadoop's version tool in a JVM with the given options (it loads classes from pyspark's jars and exits)."""
    return subprocess.run(
        ["java", *options, "-cp", class_path, "org.apache.hadoop.util.VersionInfo"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_real_jvm_maps_the_archive_the_first_one_dumped(tmp_path):
    class_path = f"{SPARK_JARS}/*"
    dump = _java(class_archive.java_options(tmp_path, class_path), class_path)
    assert dump.returncode == 0, dump.stderr
    written = list(tmp_path.glob("*.tmp"))
    assert len(written) == 1 and written[0].stat().st_size > 0
    dead = written[0].with_name(written[0].name.replace(f".{os.getpid()}.", f".{DEAD_PID}."))
    written[0].rename(dead)
    assert class_archive.adopt_dumps(class_archive.archive_path(tmp_path, class_path), time.time() + 60) is False
    options = class_archive.java_options(tmp_path, class_path)
    assert options[0].startswith("-XX:SharedArchiveFile=")
    # -Xshare:on makes a JVM that cannot map the archive refuse to start.
    mapped = _java([*options, "-Xshare:on"], class_path)
    assert mapped.returncode == 0, mapped.stderr
    other = _java([*options, "-Xshare:on"], f"{SPARK_JARS}/spark-core_2.13-{pyspark.__version__}.jar:{class_path}")
    assert other.returncode != 0  # another class path: the JVM refuses this archive
