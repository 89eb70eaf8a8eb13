"""Suite-wide isolation from the machine the tests run on.

A session on a QIF chip starts from the chip's stored calibration when one
exists (``hwloop/session/runner.py``, ``calibrated_start``), and the store
defaults to ``~/.cache/hwloop/calibration``. A developer who has run
``hwloop calibrate`` would otherwise get different sessions from CI's. Every
test (and every process it spawns) sees an empty store of its own unless the
test sets ``HWLOOP_CALIBRATION_DIR`` itself.
"""

import os
import tempfile

os.environ["HWLOOP_CALIBRATION_DIR"] = tempfile.mkdtemp(prefix="hwloop-tests-calibration-")
