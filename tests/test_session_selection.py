"""The session's selection: the start stays selected unless a later network
is better beyond the Wilson interval of its validation accuracy."""

import math

from hwloop.session.parts import Selection, accuracy_figure, wilson_interval


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
