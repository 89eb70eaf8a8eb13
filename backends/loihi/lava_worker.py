"""Entry point of the Lava worker process: ``python -m hwloop.backends.loihi.lava_worker FD``.

Kept apart from `lava_runner` so that running it as ``__main__`` does not
re-execute a module the package has already imported."""

import sys

from hwloop.backends.loihi.lava_runner import _worker_main

if __name__ == "__main__":
    _worker_main(int(sys.argv[1]))
