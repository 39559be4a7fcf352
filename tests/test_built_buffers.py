"""Checkpoint buffers stored once, compressed: exact round trips, and every malformed entry refused in one line."""

import zlib
from pathlib import Path

import pytest
import torch

from cartinv.runtime.training import built_buffers
from cartinv.runtime.training.config import ConfigError

PATH = Path("ck.pt")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex128,
                                   torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool])
def test_pack_round_trips_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(0)
    t = (torch.randn((3, 40, 50), generator=g, dtype=torch.float64) * 100).to(dtype)
    if dtype.is_floating_point:
        t.view(-1)[:3] = torch.tensor([-0.0, float("nan"), float("inf")]).to(dtype)
    packed = built_buffers.pack(t)
    assert isinstance(packed, dict) and packed["shape"] == [3, 40, 50]
    back = built_buffers.unpack(packed, "t", PATH)
    assert built_buffers.same_bits(back, t)
    assert built_buffers.tensor_hash(back) == built_buffers.tensor_hash(t)


def test_small_buffers_stay_plain_and_mostly_zero_ones_shrink():
    small = torch.arange(10, dtype=torch.float64)
    assert built_buffers.pack(small) is not small and torch.equal(built_buffers.pack(small), small)
    sparse = torch.zeros((3, 16, 16, 16, 51), dtype=torch.float64)  # MACE's U_matrix_3 shape, 0.5 % non-zero
    sparse.view(-1)[::200] = torch.linspace(-1, 1, sparse.numel() // 200 + 1, dtype=torch.float64)
    packed = built_buffers.pack(sparse)
    assert packed["zlib"].numel() < sparse.numel() * 8 / 10
    assert built_buffers.same_bits(built_buffers.unpack(packed, "u", PATH), sparse)


def test_same_bits_is_bitwise():
    assert not built_buffers.same_bits(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert built_buffers.same_bits(torch.tensor([float("nan")]), torch.tensor([float("nan")]))
    assert not built_buffers.same_bits(torch.tensor([1.0]), torch.tensor([1.0], dtype=torch.float64))
    assert not built_buffers.same_bits(torch.zeros(4), torch.zeros(2, 2))


def _packed(data: bytes, shape, dtype="float64"):
    return {"dtype": dtype, "shape": shape, "zlib": torch.frombuffer(bytearray(data), dtype=torch.uint8)}


@pytest.mark.parametrize("entry, message", [
    (_packed(zlib.compress(bytes(80)), [11]), r"does not hold exactly 88 bytes"),  # shorter than its shape
    (_packed(zlib.compress(bytes(96)), [11]), r"does not hold exactly 88 bytes"),  # longer
    (_packed(zlib.compress(bytes(88)) + b"x", [11]), r"does not hold exactly 88 bytes"),  # trailing data
    (_packed(zlib.compress(bytes(88))[:-3], [11]), r"does not hold exactly|is not zlib"),  # truncated
    (_packed(b"not zlib at all", [11]), r"'zlib' is not zlib data"),
    (_packed(zlib.compress(bytes(88)), [1 << 40]), r"declares \d+ bytes"),  # refused before decompressing
    (_packed(zlib.compress(bytes(88)), [11], dtype="object"), r"unknown dtype"),
    (_packed(zlib.compress(bytes(88)), [11], dtype=7), r"unknown dtype"),
    (_packed(zlib.compress(bytes(88)), [-11]), r"malformed shape"),
    (_packed(zlib.compress(bytes(88)), [True] * 11), r"malformed shape"),
    (_packed(zlib.compress(bytes(88)), "11"), r"malformed shape"),
    ({"dtype": "float64", "shape": [11], "zlib": torch.zeros(3)}, r"not a 1-d uint8 tensor"),
    ({"dtype": "float64", "shape": [11]}, r"neither a tensor nor a packed tensor"),
    ("a string", r"neither a tensor nor a packed tensor"),
])
def test_malformed_entries_are_one_line_errors_naming_the_buffer(entry, message):
    with pytest.raises(ConfigError, match=message) as err:
        built_buffers.unpack_all({"mace.U": entry}, PATH)
    text = str(err.value)
    assert text.startswith("ck.pt: checkpoint field 'built_buffers' entry 'mace.U'") and "\n" not in text


def test_a_zip_bomb_is_not_inflated_past_its_declared_size():
    bomb = zlib.compress(bytes(1 << 26))  # 64 MiB of zeros in about 64 KiB
    with pytest.raises(ConfigError, match="does not hold exactly 8 bytes"):
        built_buffers.unpack(_packed(bomb, [1]), "b", PATH)


def test_version_2_hash_check_names_the_buffer():
    now = {"a": torch.ones(3)}
    built_buffers.check_hashes({"a": built_buffers.tensor_hash(torch.ones(3))}, now, {"a"}, PATH)
    with pytest.raises(ConfigError, match=r"lacks 'a' and this model was not built with the value"):
        built_buffers.check_hashes({"a": built_buffers.tensor_hash(torch.zeros(3))}, now, {"a"}, PATH)
    with pytest.raises(ConfigError, match=r"not a map of names to hashes"):
        built_buffers.check_hashes({"a": torch.ones(3)}, now, {"a"}, PATH)
