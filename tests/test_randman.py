"""Randman: the generator follows its written definition, is fixed by its
seed, and gives one spike per unit in the first step_frac of the trial; the
stork parameters; the on-disk cache; registration as a data set."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwloop.data import load_dataset, randman
from hwloop.errors import DatasetError

SMALL = randman.RandmanSpec(n_classes=3, n_units=6, samples_per_class=40, dim_manifold=2, alpha=2.0, seed=5)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE_DIR", str(tmp_path / "cache"))
    randman._generate_cached.cache_clear()
    yield
    randman._generate_cached.cache_clear()


def _by_definition(spec: randman.RandmanSpec):
    """The written definition, term by term, with the generator's random draws."""
    rng = np.random.default_rng(spec.seed)
    seeds = rng.integers(0, 2**63 - 1, size=spec.n_classes)
    K = spec.n_frequencies
    us, ys = [], []
    for c in range(spec.n_classes):
        x = rng.random((spec.samples_per_class, spec.dim_manifold))
        prm = np.random.default_rng(int(seeds[c])).random((spec.n_units, spec.dim_manifold, 3, K))
        prm[:, :, 0, 0] = 0.0
        f = np.ones((len(x), spec.n_units))
        for m in range(spec.n_units):
            for d in range(spec.dim_manifold):
                total = 0.0
                for k in range(K):
                    total = total + prm[m, d, 0, k] / (k + 1) ** spec.alpha * np.sin(
                        2 * np.pi * (k * x[:, d] * prm[m, d, 1, k] + prm[m, d, 2, k]))
                f[:, m] *= total
        us.append((f - f.min(0)) / (f.max(0) - f.min(0) + 1e-7))
        ys.append(np.full(len(x), c))
    u, y = np.concatenate(us), np.concatenate(ys)
    order = rng.permutation(len(y))
    return u[order], y[order]


def test_generator_follows_its_definition():
    u, y = randman.generate(SMALL)
    u_ref, y_ref = _by_definition(SMALL)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(u, u_ref, rtol=0, atol=1e-9)
    assert SMALL.n_frequencies == 32  # ceil(1e-3 ** (-1/2))


def test_seeded_balanced_and_one_spike_per_unit():
    u, y = randman.generate(SMALL)
    u2, y2 = randman.generate(dataclasses.replace(SMALL))
    assert u is u2 or np.array_equal(u, u2)
    other, _ = randman.generate(randman.with_seed(6, SMALL))
    assert not np.allclose(u, other)
    assert np.bincount(y).tolist() == [40, 40, 40]
    assert u.min() >= 0.0 and u.max() < 1.0
    r = randman.raster(u, SMALL)
    assert r.shape == (SMALL.n_steps, 120, 6)
    assert (r.sum(0) == 1).all()  # every unit fires exactly once
    steps = randman.spike_steps(u, SMALL)
    assert steps.max() < SMALL.n_steps * SMALL.step_frac  # only in the first half of the trial
    np.testing.assert_array_equal(np.argmax(r, axis=0), steps)


def test_each_class_spans_its_whole_range():
    """Standardisation is per class: every unit's times cover [0, 1) in each class."""
    u, y = randman.generate(SMALL)
    for c in range(3):
        uc = u[y == c]
        assert np.allclose(uc.min(0), 0.0) and np.allclose(uc.max(0), 1.0, atol=1e-5)


def test_stork_parameters_and_splits():
    s = randman.STORK
    assert (s.n_classes, s.samples_per_class, s.n_units, s.n_steps, s.step_frac, s.dim_manifold, s.alpha) == \
        (10, 1000, 20, 100, 0.5, 1, 1.0)
    assert s.n_frequencies == 1000
    assert randman.split_bounds(s, 10000) == {"train": (0, 8000), "val": (8000, 9000), "test": (9000, 10000)}


def test_loads_as_a_dataset_and_splits_are_disjoint():
    small = dataclasses.replace(SMALL, samples_per_class=50)
    parts = {s: randman.load(s, small) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [120, 15, 15]
    assert parts["train"].n_features == 6 and parts["train"].classes == ("0", "1", "2")
    all_u = np.concatenate([parts[s].x for s in parts])
    np.testing.assert_array_equal(all_u, randman.generate(small)[0])


@pytest.mark.slow
def test_registered_data_set_is_the_stork_set():
    d = load_dataset("randman", "test")
    assert len(d) == 1000 and d.n_features == 20 and d.n_classes == 10


def test_cache_round_trip_and_off(tmp_path, monkeypatch):
    u, y = randman.generate(SMALL)
    path = randman._cache_file(SMALL)
    assert path.is_file() and str(path).startswith(str(tmp_path))
    randman._generate_cached.cache_clear()
    u2, y2 = randman.generate(SMALL)
    np.testing.assert_array_equal(u, u2)
    np.testing.assert_array_equal(y, y2)
    # a damaged cache file is regenerated, not trusted
    path.write_bytes(b"not an npz")
    randman._generate_cached.cache_clear()
    np.testing.assert_array_equal(randman.generate(SMALL)[0], u)
    monkeypatch.setenv("HWLOOP_CACHE_DIR", "off")
    assert randman._cache_file(SMALL) is None


@pytest.mark.parametrize("kw,match", [
    (dict(n_classes=1), "2 classes"),
    (dict(n_units=0), "n_units"),
    (dict(alpha=0.0), "alpha"),
    (dict(step_frac=1.5), "step_frac"),
    (dict(seed=-1), "seed"),
    (dict(splits=(0.8, 0.2)), "splits"),
])
def test_bad_specs_are_named(kw, match):
    with pytest.raises(DatasetError, match=match):
        randman.generate(dataclasses.replace(SMALL, **kw))
