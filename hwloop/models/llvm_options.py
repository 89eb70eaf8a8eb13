"""Process-wide LLVM options for the numba kernels, set once.

The fused kernels' loops touch many arrays; LLVM vectorises such a loop only
after runtime checks that the arrays do not overlap, and gives up beyond 8
checks by default, leaving the loop scalar (5x slower in the QIF backward,
measured). Raising the limit only lets more loops vectorise, for code compiled
from then on. LLVM accepts a command-line option once per process: a second
``set_option`` prints "may only occur zero or one times!" on stderr, so every
kernel module calls :func:`allow_many_runtime_checks` instead of setting it.
"""

_done = False


def allow_many_runtime_checks() -> None:
    """Raise LLVM's runtime-memory-check threshold to 64 (once per process)."""
    global _done
    if _done:
        return
    import llvmlite.binding as llvm

    llvm.set_option("", "-runtime-memory-check-threshold=64")
    _done = True
