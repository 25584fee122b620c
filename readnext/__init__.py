"""ReadNext's shared package: configuration, record schemas, model math and clients used by every layer."""

import os

# The model math is many small solves and products (one reader at a time, rank ~100). A
# multithreaded BLAS spends longer coordinating threads than computing them and fights Spark
# and the web workers for the same cores: measured on 2 cores, one fold-in took 9.6 ms with
# OpenBLAS's default threads and 0.7 ms with one. Set before numpy loads; an explicit setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
