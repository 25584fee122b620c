"""A class-data archive (the JVM's AppCDS) for the Spark driver: a second start-up of Spark is faster.

A Spark application with Hive support loads some 20,000 classes before its first job (Spark,
Hive's client, DataNucleus, Parquet, ALS). On two cores that is seconds of every batch run and
every test session: SparkSession start 5.7 s → 2.7 s and the first metastore call 4.3 s → 1.6 s
with the archive (docs/benchmarks.md). The first application without an archive has the JVM dump
the classes it loaded when it exits (`-XX:ArchiveClassesAtExit`, to a file of its own); the next
start adopts that file and every later one maps it (`-XX:SharedArchiveFile`).

The archive is valid for one JVM and one class path only, so its name carries a digest of both:
a new Java, pyspark or Derby client makes a new archive rather than a stale one the JVM would
refuse. A damaged or refused archive never stops a JVM (`-Xshare:auto`): it only starts slower.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from readnext.processes import pid_alive

# The JVM reports every class it cannot archive (signed jars, old class files) as a warning on
# stdout when it dumps; none of it needs anyone's attention.
QUIET = ["-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
# A dump younger than this may still be being written by a JVM whose Python driver just exited.
SETTLE_S = 30.0
# HotSpot writes a dynamic archive's header, which starts with this magic number, after all its
# regions: a dump cut short (a JVM killed while writing) lacks it and is discarded.
DYNAMIC_MAGIC = (0xF00BABA8).to_bytes(4, "little")


def _complete(dump: Path) -> bool:
    with dump.open("rb") as f:
        return f.read(4) == DYNAMIC_MAGIC


def _stamp(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_mtime_ns}:{st.st_size}"


def archive_path(folder: Path, class_path: str) -> Path:
    """Where the archive of this Java and this driver class path lives (pyspark's jars included)."""
    import pyspark

    java_home = os.environ.get("JAVA_HOME")
    java = (java_home and shutil.which("java", path=os.path.join(java_home, "bin"))) or shutil.which("java")
    parts = [
        _stamp(Path(os.path.realpath(java))) if java else "java:unknown",
        _stamp(Path(pyspark.__file__).parent / "jars"),
        *[_stamp(Path(p)) for p in class_path.split(os.pathsep) if p],
    ]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return folder / f"spark-classes-{digest}.jsa"


def adopt_dumps(archive: Path, now: float | None = None) -> bool:
    """Move a finished dump into place (the newest complete one, once its JVM is gone); True while one is unfinished."""
    now = time.time() if now is None else now
    finished, unfinished = [], False
    for dump in archive.parent.glob(f"{archive.name}.*.tmp"):
        pid = dump.name.removeprefix(f"{archive.name}.").removesuffix(".tmp")
        try:
            mtime = dump.stat().st_mtime
        except OSError:
            continue
        if not pid.isdigit() or pid_alive(int(pid)) or now - mtime < SETTLE_S:
            unfinished = True
        elif _complete(dump):
            finished.append((mtime, dump))
        else:
            dump.unlink()
    finished.sort()
    if finished and not archive.exists():
        os.replace(finished.pop()[1], archive)
    for _, dump in finished:
        dump.unlink(missing_ok=True)
    return unfinished


def java_options(folder: Path, class_path: str) -> list[str]:
    """The driver JVM's options: map the archive if there is one, else dump one at exit.

    Only one application dumps at a time (the dump makes its JVM's exit seconds slower); others
    start without the archive until it is in place.
    """
    folder.mkdir(parents=True, exist_ok=True)
    archive = archive_path(folder, class_path)
    unfinished = adopt_dumps(archive)
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}", *QUIET]
    if unfinished:
        return []
    dump = archive.with_name(f"{archive.name}.{os.getpid()}.tmp")
    dump.touch()  # the JVM writes it only at exit: until then it tells other starts a dump is coming
    return [f"-XX:ArchiveClassesAtExit={dump}", *QUIET]
