import pytest

from jobsvc.domain.durations import DurationError, parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("1 week", 604800), ("30 mins", 1800), ("7 days", 604800), ("2 hrs 20 min", 8400), ("1h", 3600),
    ("3600", 3600), ("1 day and 2 hours", 93600), ("1.5 hours", 5400), ("never", None), ("Never", None),
    ("0", None), ("1 month", 2592000), ("1 year", 31557600),
])  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1 fortnight", "week", "1 week later", "-1 day"])
def test_bad_durations(text):
    with pytest.raises(DurationError):
        parse_duration(text)
