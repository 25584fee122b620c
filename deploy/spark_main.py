"""spark-submit's entry file: runs a layer's command line with this checkout first on the path.

The driver then reads its configuration and HiveQL from the checkout, while the executors
import the same code from the zip that deploy/submit ships with --py-files.
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    layer = sys.argv.pop(1)
    runpy.run_module(layer, run_name="__main__", alter_sys=True)
