"""Bad NIR files end in one typed error naming the node and the attribute (issue 12).

Every case below crashed or misbehaved before `hwloop.interop.nir_guard`
checked the declared structure ahead of ``nir.read``: a 60000 x 60000 weight
declared by a small file asked for 26.8 GiB (MemoryError), deep nesting hit
Python's recursion limit (RecursionError), attributes of the wrong type gave
ValueError / TypeError tracebacks, complex weights lost their imaginary part
with only a warning. The fuzz test at the end mutates NIR attributes at
random and asserts only `HwloopError`s, within a memory bound (tracemalloc
peak, which sees numpy's and h5py's array allocations) and a time bound.
"""

from __future__ import annotations

import time
import tracemalloc
import warnings

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop.cli import main as cli_main
from hwloop.errors import HwloopError, NetworkFileError, NetworkSpecError
from hwloop.interop.nir_guard import MAX_DEPTH, MAX_ELEMENTS
from hwloop.interop.nir_io import export_nir, import_nir
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

#: what one import may allocate (tracemalloc peak) on the small files below
MEMORY_BOUND = 64 << 20
#: what one import may take on them, seconds (2 shared cores)
TIME_BOUND = 5.0


def small_net() -> Network:
    rng = np.random.default_rng(0)
    layers = (Layer(rng.normal(0.8, 0.5, size=(3 + 1, 5)), NeuronParams("lif", 1.0, 1.0, 1.0), (0.5,)),
              Layer(rng.normal(0.5, 0.5, size=(5 + 1, 2)), NeuronParams("lif", 1.0, 1.0, 1.0), (0.7,)))
    return Network(layers=layers, encoding=InputEncoding(3, t_at_max=2.0), decoding=OutputDecoding(("a", "b")),
                   t_max=4.0, time_unit="ms")


@pytest.fixture
def good(tmp_path):
    return export_nir(small_net(), tmp_path / "good.nir")


def bounded_import(path, **kw):
    """import_nir under the memory and time bounds; returns the result or the HwloopError."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", np.exceptions.ComplexWarning if hasattr(np, "exceptions")
                                  else np.ComplexWarning)
            return import_nir(path, **kw)
    except HwloopError as exc:
        return exc
    finally:
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"import allocated {peak / 2**20:.1f} MiB"
        assert elapsed < TIME_BOUND, f"import took {elapsed:.1f} s"


def replace(path, key, data=None, **kw):
    with h5py.File(path, "a") as f:
        del f[key]
        if data is None and "shape" not in kw:
            return
        f.create_dataset(key, data=data, **kw)


# ------------------------------------------------------------- the findings
def test_declared_huge_weight_is_refused_before_allocation(good):
    # chunked + compressed: the file stays small, the declared array is 60000 x 60000 float64 (26.8 GiB)
    replace(good, "node/nodes/fc0/weight", shape=(60000, 60000), dtype="f8", chunks=(1000, 1000),
            compression="gzip", fillvalue=0.5)
    assert good.stat().st_size < 200_000
    err = bounded_import(good)
    assert isinstance(err, NetworkFileError)
    assert "node 'fc0', attribute 'weight'" in str(err) and "(60000, 60000)" in str(err)
    assert str(MAX_ELEMENTS) in str(err)


def test_deep_nesting_is_refused_without_recursion(good, tmp_path):
    with h5py.File(good, "a") as f:
        f.create_group("node/nodes/fc0/metadata/" + "/".join(["g"] * 3000))  # nir.read recursed into this
    err = bounded_import(good)
    assert isinstance(err, NetworkFileError)
    assert f"nested deeper than {MAX_DEPTH}" in str(err) and "node 'fc0'" in str(err)


@pytest.mark.parametrize("key, data, words", [
    ("node/nodes/lif0/tau_syn", np.bytes_(b"fast"), "node 'lif0', attribute 'tau_syn': must hold real numbers"),
    ("node/nodes/fc1/weight", np.array([b"a", b"b"]), "node 'fc1', attribute 'weight': must hold real numbers"),
    ("node/nodes/lif1/v_threshold", np.array([1 + 2j, 1 + 0j]), "node 'lif1', attribute 'v_threshold': complex"),
    ("node/nodes/fc0/weight", np.ones((5, 4)) * (1 + 1j), "node 'fc0', attribute 'weight': complex"),
    ("node/nodes/fc0/type", np.int64(3), "node 'fc0', attribute 'type': must be text"),
])
def test_attributes_of_the_wrong_type_are_one_named_error(good, key, data, words):
    replace(good, key, data)
    err = bounded_import(good)
    assert isinstance(err, NetworkFileError), repr(err)
    assert words in str(err)


@pytest.mark.parametrize("key, data, words", [
    ("node/nodes/lif0/tau_syn", np.ones((5, 2)), "node 'lif0' (CubaLIF)"),
    ("node/nodes/fc0/weight", np.ones((5, 4, 1)), "node 'fc0' (Linear): weight must be a 2-D matrix"),
    ("node/nodes/lif1/r", np.array([np.nan, 1.0]), "node 'lif1' (CubaLIF): r has non-finite values"),
    ("node/nodes/fc1/weight", np.ones((2, 4)), "node 'fc1' (Linear): weight has 4 columns"),
    ("node/nodes/lif0/metadata/hwloop_neuron", np.bytes_(b"{not json"), "node 'lif0' (CubaLIF): hwloop_neuron"),
    ("node/nodes/lif0/tau_mem", np.full(5, 3.0), "tau_mem = 3 does not match the hwloop_neuron metadata"),
])
def test_wrong_shapes_and_values_name_the_node(good, key, data, words):
    replace(good, key, data)
    err = bounded_import(good)
    assert isinstance(err, (NetworkFileError, NetworkSpecError)), repr(err)
    assert words in str(err)


def test_cli_bad_nir_is_one_line_and_exit_2(good, tmp_path, capsys):
    replace(good, "node/nodes/fc0/weight", shape=(60000, 60000), dtype="f8", chunks=(1000, 1000),
            compression="gzip")
    out = tmp_path / "x.hwnet"
    assert cli_main(["import", str(good), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fc0" in err and "Traceback" not in err
    assert not out.exists()


# ------------------------------------------------------------------- sanity
def _foreign(tmp_path, tau):
    import nir

    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc": nir.Linear(weight=np.full((2, 3), 0.5)),
        "lif": nir.CubaLIF(tau_syn=np.full(2, tau), tau_mem=np.full(2, tau), r=np.ones(2), v_leak=np.zeros(2),
                           v_threshold=np.ones(2), w_in=np.full(2, tau)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    path = tmp_path / "foreign.nir"
    nir.write(str(path), g)
    return path


def test_implausible_time_constant_is_named(tmp_path):
    # a Norse-style export read as plain NIR: tau = 1e-7 s in a 10 ms trial
    path = _foreign(tmp_path, 1e-7)
    with pytest.raises(NetworkSpecError, match=r"node 'lif' \(CubaLIF\): tau_syn = 1e-07 s is 1e-05 times the "
                                               r"trial length t_max = 0.01 s: implausible"):
        import_nir(path, t_max=0.01, time_unit="s")
    assert import_nir(_foreign(tmp_path, 2e-3), t_max=0.01, time_unit="s").network.sizes == (3, 2)


# --------------------------------------------------------------------- fuzz
NODES_ATTRS = [("fc0", "weight"), ("fc1", "weight"), ("fc1_bias", "weight"), ("input", "shape"),
               ("output", "shape"), ("fc0", "type"), ("lif0", "type")] + [
    (lif, a) for lif in ("lif0", "lif1")
    for a in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")] + [
    ("lif0", "metadata/hwloop_neuron"), ("lif1", "metadata/hwloop_options")]

values = st.one_of(
    st.builds(lambda shape, v: np.full(shape, v), st.lists(st.integers(0, 7), max_size=3).map(tuple),
              st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda shape, v: np.full(shape, v, dtype=np.int64), st.lists(st.integers(0, 7), max_size=2).map(tuple),
              st.integers(-2**62, 2**62)),
    st.builds(lambda v: np.array(v), st.lists(st.booleans(), max_size=6)),
    st.builds(lambda v: np.array(v), st.lists(st.complex_numbers(allow_nan=False, max_magnitude=10), min_size=1,
                                              max_size=5)),
    st.binary(max_size=40).map(np.bytes_),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20).map(lambda s: np.array(s, dtype=h5py.string_dtype())),
    st.just("huge"), st.just("group"), st.just("delete"),
)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(NODES_ATTRS), values), min_size=1, max_size=3))
def test_fuzzed_attributes_give_only_typed_errors(tmp_path_factory, edits):
    path = export_nir(small_net(), tmp_path_factory.mktemp("fuzz") / "f.nir")
    with h5py.File(path, "a") as f:
        for (node, attr), value in edits:
            key = f"node/nodes/{node}/{attr}"
            if key in f:
                del f[key]
            if isinstance(value, str):
                if value == "huge":
                    f.create_dataset(key, shape=(1 << 20, 1 << 12), dtype="f8", chunks=(256, 256),
                                     compression="gzip")
                elif value == "group":
                    f.create_group(key + "/x/y")
                continue
            f.create_dataset(key, data=value)
    result = bounded_import(path)  # memory and time asserted inside
    assert isinstance(result, HwloopError) or result.network.sizes[0] == 3, repr(result)
