import pytest
from hypothesis import given
from hypothesis import strategies as st

from latentcode.payload import (
    KeyedStream,
    PayloadError,
    bit_accuracy,
    bits_to_bytes,
    bytes_to_bits,
    check_bits,
    is_bits,
    mean_bit_accuracy,
    random_payloads,
    read_key_file,
    xor_bits,
)

bitstrings = st.text(alphabet="01", min_size=1, max_size=200)


def test_is_bits():
    assert is_bits("0101") and is_bits("1")
    for bad in ["", "012", "01 1", None, 101, ["0", "1"]]:
        assert not is_bits(bad)
    with pytest.raises(PayloadError, match="string of 0 and 1"):
        check_bits("0a1")


def test_random_payloads_are_seeded_and_balanced():
    a, b, c = random_payloads(200, 64, seed=1), random_payloads(200, 64, seed=1), random_payloads(200, 64, seed=2)
    assert a == b and a != c
    assert all(len(p) == 64 and is_bits(p) for p in a)
    ones = sum(p.count("1") for p in a) / (200 * 64)
    assert 0.47 < ones < 0.53
    with pytest.raises(PayloadError):
        random_payloads(3, 0, seed=0)


@given(st.binary(min_size=1, max_size=64))
def test_bytes_bits_round_trip(data):
    assert bits_to_bytes(bytes_to_bits(data)) == data


@given(bitstrings)
def test_bits_pad_to_whole_bytes(bits):
    packed = bits_to_bytes(bits)
    assert len(packed) == (len(bits) + 7) // 8
    assert bytes_to_bits(packed)[: len(bits)] == bits


@given(bitstrings, st.data())
def test_xor_is_an_involution(a, data):
    b = data.draw(st.text(alphabet="01", min_size=len(a), max_size=len(a)))
    assert xor_bits(xor_bits(a, b), b) == a


def test_bit_accuracy():
    assert bit_accuracy("1010", "1010") == 1.0
    assert bit_accuracy("1010", "0101") == 0.0
    assert bit_accuracy("1010", "10") == 0.5  # missing bits count as wrong
    assert bit_accuracy("1010", "101011") == 1.0  # padding bits are ignored
    assert bit_accuracy("1010", None) == 0.0
    assert mean_bit_accuracy(["11", "00"], ["11", "01"]) == 0.75
    with pytest.raises(PayloadError):
        mean_bit_accuracy(["1"], [])


def test_keyed_stream_is_deterministic_and_key_dependent():
    s1, s2 = KeyedStream(b"k", "nonce"), KeyedStream(b"k", "nonce")
    assert s1.bits(300) == s2.bits(300)
    assert KeyedStream(b"k", "nonce").bits(256) != KeyedStream(b"k2", "nonce").bits(256)
    assert KeyedStream(b"k", "a").bits(256) != KeyedStream(b"k", "b").bits(256)
    # reading in pieces gives the same bytes as reading at once
    whole = KeyedStream(b"k").read(100)
    pieces = KeyedStream(b"k")
    assert pieces.read(7) + pieces.read(60) + pieces.read(33) == whole
    us = [KeyedStream(b"k", str(i)).uniform() for i in range(2000)]
    assert all(0 <= u < 1 for u in us) and 0.45 < sum(us) / len(us) < 0.55
    with pytest.raises(PayloadError):
        KeyedStream(b"")


def test_key_files(tmp_path):
    (tmp_path / "k").write_bytes(b"correct horse")
    assert read_key_file(tmp_path / "k") == read_key_file(tmp_path / "k")
    assert len(read_key_file(tmp_path / "k")) == 32
    with pytest.raises(PayloadError, match="not found"):
        read_key_file(tmp_path / "missing")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(PayloadError, match="empty"):
        read_key_file(tmp_path / "empty")
