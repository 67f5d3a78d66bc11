"""Quantities with units: the one parser behind board files, harvester specs and CLI options."""
import pytest

from tinyexit.errors import TinyexitError
from tinyexit.units import format_quantity, parse_quantity


@pytest.mark.parametrize("text, unit, value", [
    ("100uF", "F", 100e-6), ("100 µF", "F", 100e-6), ("3.3mA", "A", 3.3e-3), ("85ms", "s", 0.085),
    ("41us", "s", 41e-6), ("1.8V", "V", 1.8), ("1mW", "W", 1e-3), ("0.5", "W", 0.5), (2, "V", 2.0),
    ("64MHz", "Hz", 64e6), ("1e-3W", "W", 1e-3),
])
def test_parse(text, unit, value):
    assert parse_quantity(text, unit) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text, unit", [("3.3mV", "A"), ("m", "A"), ("fast", "s"), ("-1mA", "A"), ("3.3m", "A"),
                                        (True, "V")])
def test_refused_with_an_example(text, unit):
    with pytest.raises(TinyexitError) as exc:
        parse_quantity(text, unit, what="--x")
    assert str(exc.value).startswith("--x: ") and "e.g." in str(exc.value)


def test_format():
    assert [format_quantity(v, u) for v, u in ((3.3e-3, "A"), (100e-6, "F"), (0.0, "W"), (2.5, "V"))] == \
        ["3.3mA", "100uF", "0W", "2.5V"]
