"""A ``calib=on`` session records the calibration it deployed through: in its
checkpoint (a resume against another stored calibration is refused, since the
same weights would deploy differently) and in the networks it writes (so that
`hwloop eval` deploys them the way they were trained, and says so)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwloop.calibration import Calibration, eval_target, store_path, trained_calibration, truth_of
from hwloop.cli import main
from hwloop.session.errors import SessionError
from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH
from hwloop.network import Network
from hwloop.session import LoopConfig, run_session
from hwloop.session.checkpoint import CheckpointStore
from hwloop.session.files import SessionDir

QIF = "hwloop/pretrained/yinyang-qif.hwnet"
CHIP = "qif-emu?baud=0&chip_id=6"
SHORT = dict(epochs=1, batch_size=50, train_limit=50, eval_limit=100, final_test=False, compare_software=False)


def _store(chip_id: int, created: str = "2026-12-04T00:00:00Z", scale: float = 1.0) -> Calibration:
    """A calibration file of the chip's true parameters (fast; the fit is tests/test_calibration.py's)."""
    tr = truth_of(chip_id, DEFAULT_MISMATCH, 512)
    cal = Calibration(chip_id=chip_id, fw_version="1.1", g=tr["g"], D=tr["D"], u0=np.zeros(512),
                      col=tr["col"] * scale, row0=tr["row0"], row1=tr["row1"], created=created)
    cal.save(store_path(chip_id, "1.1"))
    return cal


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CALIBRATION_DIR", str(tmp_path / "cal"))
    return tmp_path / "cal"


@pytest.fixture
def session(store, tmp_path):
    """A finished one-epoch calib=on session on chip 6, and the calibration it trained through."""
    cal = _store(6)
    d = tmp_path / "s"
    run_session(d, LoopConfig(target=CHIP + "&calib=on", init=QIF, **SHORT), progress=False)
    return d, cal


def _checkpoint_state(d):
    (st, _), _, _ = CheckpointStore(SessionDir(d)).load(lambda s: (s, None), 1 << 30)
    return st


def test_the_checkpoint_and_the_networks_record_the_calibration(session):
    d, cal = session
    rec = _checkpoint_state(d)["backend"]["calibration"]
    assert rec == {"chip_id": 6, "fw_version": "1.1", "sha256": cal.sha256, "created": cal.created}
    # the digest is the one in the file (a loaded calibration's own)
    assert cal.sha256 == json.loads(store_path(6, "1.1").read_text())["sha256"]
    for name in ("network.hwnet", "best.hwnet"):
        net = Network.load(d / name)
        assert trained_calibration(net) == rec
        assert dict(net.provenance.extra)["trained_on"]["target"] == CHIP + "&calib=on"
    assert trained_calibration(Network.load(QIF)) is None


def test_a_resume_against_another_stored_calibration_is_refused_and_the_original_resumes(session):
    d, cal = session
    original = store_path(6, "1.1").read_bytes()
    other = _store(6, created="2026-12-05T00:00:00Z", scale=1.01)  # the chip calibrated again
    assert other.sha256 != cal.sha256
    log_before = (d / "log.jsonl").read_bytes()
    with pytest.raises(SessionError, match=rf"calibration {cal.sha256[:12]}.*the store now holds "
                                           rf"{other.sha256[:12]}.*Put the session's calibration file back"):
        run_session(d, resume=True, epochs=2, progress=False)
    assert (d / "log.jsonl").read_bytes() == log_before  # nothing was trained on the other deployment
    store_path(6, "1.1").write_bytes(original)
    res = run_session(d, resume=True, epochs=2, progress=False)
    assert res["ok"] and _checkpoint_state(d)["step"] == 2


def test_a_calib_off_session_records_no_calibration(store, tmp_path):
    _store(6)
    d = tmp_path / "off"
    run_session(d, LoopConfig(target=CHIP + "&calib=off", init=QIF, **SHORT), progress=False)
    assert "calibration" not in _checkpoint_state(d)["backend"]
    assert trained_calibration(Network.load(d / "best.hwnet")) is None


def test_eval_deploys_a_calibrated_sessions_network_calibrated_and_says_so(session, capsys):
    d, cal = session
    net = Network.load(d / "best.hwnet")
    target, notice = eval_target(net, CHIP)
    assert target == CHIP + "&calib=on"
    assert "trained in the loop through the calibrated deployment of chip 0x6" in notice
    assert cal.sha256[:12] in notice and "calib=off" in notice
    # the CLI: the calibrated target, the line on stderr and in --json
    assert main(["eval", str(d / "best.hwnet"), "--target", CHIP, "--limit", "100", "--quiet", "--json"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out.strip().splitlines()[-1])
    assert res["target"] == CHIP + "&calib=on" and res["notices"] == [notice] and notice in cap.err
    # the same as asking for calib=on
    assert main(["eval", str(d / "best.hwnet"), "--target", CHIP + "&calib=on", "--limit", "100", "--quiet",
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["accuracy"] == res["accuracy"] and "notices" not in again


def test_eval_says_when_it_deploys_as_is_or_through_another_calibration(session):
    d, cal = session
    net = Network.load(d / "best.hwnet")
    target, notice = eval_target(net, CHIP + "&calib=off")
    assert target == CHIP + "&calib=off" and "deploys it as is" in notice
    other = _store(6, created="2026-12-05T00:00:00Z", scale=1.01)
    target, notice = eval_target(net, CHIP)
    assert target == CHIP + "&calib=on" and f"another one ({other.sha256[:12]}" in notice
    store_path(6, "1.1").unlink()
    target, notice = eval_target(net, CHIP)
    assert target == CHIP and "no usable calibration" in notice and "hwloop calibrate" in notice
    # calib=on with no file: the target itself refuses it (TargetError), nothing to add here
    assert eval_target(net, CHIP + "&calib=on") == (CHIP + "&calib=on", None)


def test_eval_leaves_other_networks_and_targets_alone(session):
    d, _ = session
    assert eval_target(Network.load(QIF), CHIP) == (CHIP, None)
    assert eval_target(Network.load(d / "best.hwnet"), "software") == ("software", None)


def test_a_calibrated_session_extended_on_resume_is_the_session_run_to_the_end(session, tmp_path):
    """The calibration record does not disturb exactness: one epoch, then two on resume, is
    the two-epoch calib=on session, noise and all (tests/test_session_resume.py for calib=off)."""
    from session_compare import assert_same_session

    d, _ = session
    run_session(d, resume=True, epochs=2, progress=False)
    ref = tmp_path / "two"
    run_session(ref, LoopConfig(target=CHIP + "&calib=on", init=QIF, **{**SHORT, "epochs": 2}), progress=False)
    assert_same_session(ref, d)


def test_eval_of_an_older_calibrated_sessions_network_reads_the_sessions_config(session, tmp_path):
    """A network written by a calib=on session of an hwloop before the record: its session's
    config.json says calib=on, and eval treats it alike (the calibration itself unknown)."""
    import dataclasses

    d, _ = session
    net = Network.load(d / "best.hwnet")
    extra = {k: v for k, v in dict(net.provenance.extra).items() if k != "trained_on"}
    old = dataclasses.replace(net, provenance=dataclasses.replace(net.provenance, extra=extra))
    old.save(d / "old.hwnet")
    old = Network.load(d / "old.hwnet")
    assert trained_calibration(old) is None
    target, notice = eval_target(old, CHIP, d / "old.hwnet")
    assert target == CHIP + "&calib=on" and f"session ({d.resolve()})" in notice and "did not record" in notice
    # the same file outside a session directory: nothing known, nothing changed
    old.save(tmp_path / "alone.hwnet")
    assert eval_target(old, CHIP, tmp_path / "alone.hwnet") == (CHIP, None)
