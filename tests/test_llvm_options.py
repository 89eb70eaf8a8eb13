"""The kernels' process-wide LLVM option is set once, whichever kernels a process imports."""

import subprocess
import sys


def test_importing_every_numba_kernel_prints_nothing_and_sets_the_threshold():
    code = ("import hwloop.models.ttfs.qif_kernel, hwloop.models.trains.kernel, hwloop.models.ttfs.lif_kernel\n"
            "import hwloop.models.trains.qif_trains_kernel, hwloop.models.llvm_options as o\n"
            "assert o._done\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    # LLVM complains on stderr when an option is given twice ("may only occur zero or one times")
    assert "may only occur" not in run.stderr, run.stderr
