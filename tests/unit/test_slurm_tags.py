"""The identity tag in --comment: exact round trip, and parsing that never raises."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.observed import JobKey
from reconciler.slurm.tags import TAG_PREFIX, JobTag, format_tag, parse_tag

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1, max_size=64)
TAGS = st.builds(JobTag, uid=WORD, task=WORD, attempt=st.integers(0, 999_999_999),
                 part=st.integers(0, 999_999_999), fingerprint=WORD)


def test_format_is_the_documented_layout():
    tag = JobTag(uid="3f2a-77", task="simulate", attempt=2, part=1000, fingerprint="0123456789abcdef")
    assert format_tag(tag) == "slurm-reconciler.v1:3f2a-77:simulate:2:1000:0123456789abcdef"
    assert TAG_PREFIX == "slurm-reconciler.v1"
    assert tag.key == JobKey("simulate", 2, 1000)


@given(TAGS)
def test_round_trip(tag):
    text = format_tag(tag)
    assert parse_tag(text) == tag
    assert not any(c.isspace() or c in "\"'|#$\\`" for c in text)


@given(st.one_of(st.none(), st.text(), st.text(alphabet=":0123456789abc.-v").map(lambda s: TAG_PREFIX + ":" + s)))
def test_parse_never_raises(text):
    result = parse_tag(text)
    assert result is None or isinstance(result, JobTag)


@pytest.mark.parametrize("field", ["uid", "task", "fingerprint"])
@pytest.mark.parametrize("bad", ["", "a b", "a:b", "a|b", "a#b", "$x", "a\nb", "é"])
def test_format_rejects_unsafe_words(field, bad):
    values = {"uid": "u", "task": "t", "attempt": 1, "part": 0, "fingerprint": "f"}
    values[field] = bad
    with pytest.raises(ValueError):
        format_tag(JobTag(**values))


@pytest.mark.parametrize("attempt, part", [(-1, 0), (1, -5), (10**10, 0)])
def test_format_rejects_numbers_that_would_not_parse_back(attempt, part):
    with pytest.raises(ValueError):
        format_tag(JobTag(uid="u", task="t", attempt=attempt, part=part, fingerprint="f"))


@pytest.mark.parametrize("comment", [
    None, "", "hello", "someone else's | job # with spaces",
    "slurm-reconciler.v2:u:t:1:0:f",  # another version of the tag is not ours to interpret
    "slurm-reconciler.v1:u:t:1:0",  # a field short
    "slurm-reconciler.v1:u:t:1:0:f:extra",
    "slurm-reconciler.v1:u:t:one:0:f",
    "slurm-reconciler.v1:u:t:+1:0:f",
    "slurm-reconciler.v1:u:t:\u0663:0:f",  # a non-ASCII digit int() would accept
    "slurm-reconciler.v1::t:1:0:f",
    "x slurm-reconciler.v1:u:t:1:0:f",
])
def test_foreign_and_damaged_comments_are_not_ours(comment):
    assert parse_tag(comment) is None
