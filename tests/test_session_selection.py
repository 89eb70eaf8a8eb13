"""The session's selection: the start stays selected unless a later network
is better beyond the Wilson interval of its validation accuracy."""

import math

import numpy as np

from hwloop.session.parts import Selection, accuracy_figure, paired_z, wilson_interval


def _ev(acc, n=1000):
    f = accuracy_figure(acc, n)
    return {"val_accuracy": acc, "val_n": n, "val_ci": f["ci"]}


def test_wilson_interval_matches_the_formula():
    lo, hi = wilson_interval(967, 1000)
    # hand computation of the Wilson score interval, z = 1.96
    p, n, z = 0.967, 1000, 1.96
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert math.isclose(lo, c - h) and math.isclose(hi, c + h)
    assert lo < p < hi and 0.95 < lo and hi < 0.98
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_a_rise_within_the_noise_keeps_the_start():
    s = Selection()
    assert s.offer(_ev(0.967), step=0)  # the start is the first candidate
    assert not s.offer(_ev(0.975), step=130)  # issue 19: +0.8 points on 1000 samples
    assert s.best_step == 0 and s.best_acc == 0.967


def test_a_clear_rise_is_selected_and_the_highest_of_those_kept():
    s = Selection()
    s.offer(_ev(0.786), step=0)
    assert s.offer(_ev(0.95), step=100)
    assert not s.offer(_ev(0.94), step=200)
    assert s.offer(_ev(0.96), step=300)
    assert (s.best_step, s.best_acc, s.start_acc) == (300, 0.96, 0.786)
    assert s.state() == {"start_acc": 0.786, "best_step": 300}


def _paired(start_correct, cand_correct):
    s = Selection()
    s.offer({**_ev(float(np.mean(start_correct)), len(start_correct)), "_correct": np.asarray(start_correct)}, 0)
    ev = {**_ev(float(np.mean(cand_correct)), len(cand_correct)), "_correct": np.asarray(cand_correct)}
    s.compare(ev)
    return s, ev


def test_paired_rule_accepts_a_rise_the_same_samples_confirm_on_a_small_split():
    """Digits, 360 validation samples: 90.6 % -> 93.1 %. The unpaired interval
    cannot tell (lower bound 90.0 % < 90.6 %); on the same samples the candidate
    gained 11 and lost 2, McNemar z = 9 / sqrt(13) = 2.50 > 1.96."""
    start = np.ones(360, bool)
    start[:34] = False  # 326 right: 90.6 %
    cand = start.copy()
    cand[:11] = True  # gained 11
    cand[100:102] = False  # lost 2 -> 335 right: 93.1 %
    s, ev = _paired(start, cand)
    assert ev["val_vs_start"] == [11, 2]
    assert ev["val_ci"][0] < s.start_acc  # the Wilson rule alone would keep the start
    assert math.isclose(paired_z(11, 2), 9 / math.sqrt(13))
    assert s.offer(ev, 100) and s.best_step == 100


def test_paired_rule_rejects_a_rise_within_the_noise():
    """Issue 19's case, 1000 samples, 96.7 % -> 97.5 % (+8): gained 20, lost 12,
    z = 8 / sqrt(32) = 1.41: the start stays."""
    start = np.ones(1000, bool)
    start[:33] = False
    cand = start.copy()
    cand[:20] = True
    cand[500:512] = False
    s, ev = _paired(start, cand)
    assert ev["val_vs_start"] == [20, 12] and math.isclose(ev["val_accuracy"], 0.975)
    assert not s.offer(ev, 130) and s.best_step == 0
    assert s.state()["start_correct"].tolist() == start.astype(int).tolist()
