"""human_size: byte-for-byte the Go seed's HumanSize, whose largest unit is
G (COCOON-FACTS: 1 TiB is `1024.0G`, 5 TiB `5120.0G`):

    func HumanSize(b int64) string {
        const unit = 1024
        if b < unit { return fmt.Sprintf("%dB", b) }
        div, exp := int64(unit), 0
        for n := b / unit; n >= unit && exp < 2; n /= unit { div *= unit; exp++ }
        return fmt.Sprintf("%.1f%c", float64(b)/float64(div), "KMG"[exp])
    }

Expected strings below are worked out by hand from that code (Go's %.1f rounds
the exact binary value half-to-even), never by calling the function under test.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cocoond
from cocoond import human_size

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

CASES = [
    # the contract's examples
    (3 * 2**29, "1.5G"),
    (512 * 2**20, "512.0M"),
    (1024, "1.0K"),
    (1023, "1023B"),
    # plain bytes: everything under 1024, negatives included ("%dB")
    (0, "0B"),
    (1, "1B"),
    (-1, "-1B"),
    (-1024, "-1024B"),
    (-5000, "-5000B"),
    (INT64_MIN, "-9223372036854775808B"),
    # K: 1024 <= b < 1024*1024
    (1025, "1.0K"),
    (1126, "1.1K"),  # 1.0996...
    (1280, "1.2K"),  # exactly 1.25: half-to-even rounds down
    (1536, "1.5K"),
    (1792, "1.8K"),  # exactly 1.75: half-to-even rounds up
    (10 * 1024, "10.0K"),
    (1023 * 1024, "1023.0K"),
    (1048575, "1024.0K"),  # n = 1023 stays in K; 1023.999... prints as 1024.0
    # each unit boundary
    (1048576, "1.0M"),
    (2**30 - 1, "1024.0M"),
    (2**30, "1.0G"),
    (2**40 - 1, "1024.0G"),
    # G is the largest unit: terabytes and beyond stay in G
    (2**40, "1024.0G"),
    (5 * 2**40, "5120.0G"),
    (2**50, "1048576.0G"),
    (2**60, "1073741824.0G"),
    (INT64_MAX, "8589934592.0G"),  # float64(2**63-1) == 2**63
]


@pytest.mark.parametrize(("b", "expected"), CASES, ids=[str(b) for b, _ in CASES])
def test_human_size_matches_go_seed(b: int, expected: str) -> None:
    assert human_size(b) == expected


def test_human_size_is_exported() -> None:
    assert cocoond.human_size is human_size
    assert isinstance(human_size(1536), str)


def _go_human_size(b: int) -> str:
    """The seed, with the formatting done by Decimal (exact value of the
    float64 quotient, rounded half-to-even to one place) instead of '%'."""
    if b < 1024:
        return f"{b}B"
    div, exp, n = 1024, 0, b // 1024
    while n >= 1024 and exp < 2:
        div *= 1024
        exp += 1
        n //= 1024
    quotient = Decimal(float(b) / float(div)).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
    return f"{quotient}{'KMG'[exp]}"


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_human_size_property_int64(b: int) -> None:
    assert human_size(b) == _go_human_size(b)


@given(st.integers(min_value=0, max_value=62), st.integers(min_value=-3, max_value=3))
def test_human_size_property_near_powers_of_two(shift: int, delta: int) -> None:
    b = (1 << shift) + delta
    assert human_size(b) == _go_human_size(b)


def test_reference_implementation_sanity() -> None:
    # The reference used by the properties above agrees with the hand-made table.
    for b, expected in CASES:
        assert _go_human_size(b) == expected, b
