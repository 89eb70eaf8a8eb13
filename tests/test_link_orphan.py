"""An emulator dies with its host (issue 12, finding 6).

A host that opened ``qif-emu`` is SIGKILLed while the chip streams results
into the pseudo-terminal that nobody reads any more: the emulator must notice
within a bounded time although it is blocked writing into a full pty."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

HOST = textwrap.dedent("""
    import sys, time
    import numpy as np
    from hwloop.backends import open_target
    from hwloop.firmware_models.wire import messages as M
    from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

    q = NeuronParams(model="qif", tau_syn=1.0, tau_mem=1.0, threshold=1.0, options={"i0": 1.25, "v0": 0.5})
    rng = np.random.default_rng(0)
    net = Network(layers=(Layer(rng.normal(0, 0.6, (5, 120)), q, bias_times=(0.2,)),
                          Layer(rng.normal(0, 0.4, (121, 3)), q, bias_times=(0.2,))),
                  encoding=InputEncoding(n_features=4), decoding=OutputDecoding(classes=("a", "b", "c")), t_max=3.0)
    chip = open_target("qif-emu?mismatch=0&noise=0")
    chip.load(net)
    # 1024 samples x 246 bytes of results: far more than a pty holds; then never read again
    chip.client.link.send(M.RUN, 1, M.pack_run(0, 0, np.full((1024, 4), 100, np.uint16)))
    chip.client.link.flush()
    print(chip.proc.pid, flush=True)
    time.sleep(600)
""")

#: the bound this test promises: the emulator's watchdog looks every 0.1 s
GONE_WITHIN_S = 3.0


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited (a zombie waits for whoever adopted it)


def test_emulator_exits_promptly_when_its_host_is_sigkilled():
    host = subprocess.Popen([sys.executable, "-c", HOST], stdout=subprocess.PIPE, text=True)
    emu = None
    try:
        emu = int(host.stdout.readline())
        time.sleep(1.0)  # let the chip fill the pty and block on it
        assert not _gone(emu)
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        t0 = time.monotonic()
        while not _gone(emu) and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        took = time.monotonic() - t0
        assert _gone(emu), "emulator still running 30 s after its host was killed"
        assert took < GONE_WITHIN_S, f"emulator took {took:.1f} s to notice its host died"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(10)
        if emu is not None and not _gone(emu):
            os.kill(emu, signal.SIGKILL)
