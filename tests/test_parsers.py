"""IDX and CSV readers: round trips, every malformed-file error, and property-based fuzzing."""

import gzip

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smallvision.data.csvdata import read_csv, write_csv
from smallvision.data.idx import read_idx, read_idx_pair, write_idx
from smallvision.errors import DataError


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix):
    arr = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    p = tmp_path / f"a-idx3-ubyte{suffix}"
    write_idx(p, arr)
    assert np.array_equal(read_idx(p), arr)
    lab = np.arange(5, dtype=np.uint8)
    write_idx(tmp_path / f"l{suffix}", lab)
    x, y = read_idx_pair(p, tmp_path / f"l{suffix}")
    assert x.shape == (5, 1, 4, 3) and y.dtype == np.int64 and list(y) == list(range(5))


def _write(p, data: bytes):
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("data,msg", [
    (b"\x00\x00\x08", "only 3 bytes"),
    (b"\x12\x34\x08\x01" + b"\x00" * 8, "not an IDX file"),
    (b"\x00\x00\x07\x01" + b"\x00" * 8, "not an IDX file"),  # unknown type code
    (b"\x00\x00\x08\x09" + b"\x00" * 8, "not an IDX file"),  # 9 dimensions
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated: header promises"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "unexpected bytes"),
])
def test_idx_malformed(tmp_path, data, msg):
    with pytest.raises(DataError, match=msg):
        read_idx(_write(tmp_path / "f", data))


def test_idx_corrupt_gzip_and_missing(tmp_path):
    good = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x03abc")
    with pytest.raises(DataError, match="cannot decompress"):
        read_idx(_write(tmp_path / "f.gz", good[: len(good) // 2]))
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope")


def test_idx_pair_count_mismatch_and_shapes(tmp_path):
    write_idx(tmp_path / "i", np.zeros((4, 2, 2), np.uint8))
    write_idx(tmp_path / "l", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="count mismatch.*4 images.*3 labels"):
        read_idx_pair(tmp_path / "i", tmp_path / "l")
    with pytest.raises(DataError, match="expected labels with 1 dimension"):
        read_idx_pair(tmp_path / "i", tmp_path / "i")
    write_idx(tmp_path / "f", np.zeros((4, 2, 2), np.float32))
    with pytest.raises(DataError, match="unsigned-byte"):
        read_idx_pair(tmp_path / "f", tmp_path / "l")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64))
def test_idx_any_bytes_parse_or_data_error(tmp_path, data):
    p = _write(tmp_path / "fuzz", data)
    try:
        arr = read_idx(p)
    except DataError:
        return
    assert arr.size * arr.itemsize + 4 + 4 * arr.ndim == len(data)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), dtype=st.sampled_from(["u1", "i1", ">i2", ">i4", ">f4", ">f8"]))
def test_idx_round_trip_any_shape_and_type(tmp_path, shape, dtype):
    arr = (np.arange(int(np.prod(shape))) % 100).astype(np.dtype(dtype).newbyteorder("=")).reshape(shape)
    write_idx(tmp_path / "r", arr)
    assert np.array_equal(read_idx(tmp_path / "r"), arr)


# ------------------------------------------------------------------------------------ CSV
@pytest.mark.parametrize("header", [True, False])
def test_csv_round_trip(tmp_path, header):
    x = np.random.default_rng(1).integers(0, 256, (6, 1, 3, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 3, 4, 5])
    write_csv(tmp_path / "t.csv", x, y, header=header)
    rx, ry = read_csv(tmp_path / "t.csv")
    assert np.array_equal(rx, x) and np.array_equal(ry, y)


@pytest.mark.parametrize("text,msg", [
    ("", "empty CSV"),
    ("1,2,3,4,5\n1,2,3,4\n", "number of columns changed"),
    ("1,2,3,4,5\n1,2,x,4,5\n", "could not convert"),
    ("label,a,b,c,d\n1.5,0,0,0,0\n", "row 2: label 1.5 is not a class index"),
    ("-1,0,0,0,0\n", "label -1 is not a class index"),
    ("1,0,0,300,0\n", "row 1, column 4: pixel 300 outside 0-255"),
    ("1,0,0,0\n", "4 columns per row"),
    ("label,p0\n", "no data rows"),
])
def test_csv_malformed(tmp_path, text, msg):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=msg):
        read_csv(p)


def test_csv_not_text_and_missing(tmp_path):
    p = tmp_path / "bin.csv"
    p.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(DataError):
        read_csv(p)
    with pytest.raises(DataError, match="file not found"):
        read_csv(tmp_path / "none.csv")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="0123456789,.-\nabe ", max_size=80))
def test_csv_any_text_parses_or_data_error(tmp_path, text):
    p = tmp_path / "fuzz.csv"
    p.write_text(text)
    try:
        x, y = read_csv(p)
    except DataError:
        return
    assert x.dtype == np.uint8 and len(x) == len(y) and x.shape[2] == x.shape[3]


def test_set_reaches_one_option_of_a_table_and_refuses_a_string_for_a_table():
    from smallvision import api
    from smallvision.cli.flags import parse_sets
    from smallvision.errors import UsageError

    assert parse_sets(["data_args.size=96", "model_args.pretrained=true", "epochs=2"]) == {
        "data_args": {"size": 96}, "model_args": {"pretrained": True}, "epochs": 2}
    with pytest.raises(UsageError, match="unknown setting"):
        parse_sets(["data_arg.size=96"])
    with pytest.raises(UsageError, match="data_args is a table"):
        api.make_config("mnist-fast", data_args="{size=96}")
