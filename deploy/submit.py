"""Submit a ReadNext layer to a Spark cluster with spark-submit, configured like a local run.

    python -m deploy.submit [--master spark://host:7077] batch_layer run --data DIR

The driver runs here (client mode) from this checkout; the executors get the project's
packages as a zip (--py-files) and every setting of `readnext.spark.spark_conf`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from readnext.config import PROJECT_ROOT, Config, load_config
from readnext.spark import spark_conf

PACKAGES = ("readnext", "batch_layer", "speed_layer")
LAYERS = ("batch_layer", "speed_layer")


def build_zip(config: Config) -> Path:
    """Zip the project's packages for the executors."""
    target = config.stack.state_dir / "dist" / "readnext.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in PACKAGES:
            for path in sorted((PROJECT_ROOT / package).rglob("*")):
                if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
                    zf.write(path, path.relative_to(PROJECT_ROOT))
    return target


def spark_submit_command(config: Config, master: str | None, layer: str, args: list[str]) -> list[str]:
    from pyspark.find_spark_home import _find_spark_home

    conf = spark_conf(config, streaming=layer == "speed_layer")
    conf["spark.master"] = master or conf["spark.master"]
    cmd = [str(Path(_find_spark_home()) / "bin" / "spark-submit"), "--master", conf.pop("spark.master")]
    cmd += ["--py-files", str(build_zip(config))]
    for key, value in sorted(conf.items()):
        cmd += ["--conf", f"{key}={value}"]
    return [*cmd, str(PROJECT_ROOT / "deploy" / "spark_main.py"), layer, *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.submit", description=__doc__.splitlines()[0])
    parser.add_argument("--master", help="Spark master URL (default: [spark] master of the configuration)")
    parser.add_argument("layer", choices=LAYERS)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the layer's command line")
    ns = parser.parse_args(argv)
    config = load_config()
    env = dict(os.environ, PYSPARK_PYTHON=config.spark.python or sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return subprocess.call(spark_submit_command(config, ns.master, ns.layer, ns.args), env=env)


if __name__ == "__main__":
    sys.exit(main())
