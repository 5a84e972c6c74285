"""The checks that stop ingestion when the broker's topic is not the one bronze recorded."""

from __future__ import annotations

from streaming.ingest import TopicReset, fingerprint, position_problems


def test_a_log_that_ends_before_or_starts_after_the_recorded_position_is_a_problem() -> None:
    next_offsets = {0: 166_001, 1: 500, 2: 10, 3: 7}
    bounds = {0: (0, 607), 1: (0, 500), 2: (40, 90), 3: (-1, -1)}  # 3: no fetch answered yet
    problems = position_problems(next_offsets, bounds)
    assert problems == [
        "partition 0: bronze recorded offsets up to 166,000 but the broker's log ends at 607",
        "partition 2: the broker's log starts at 40, after the next offset to ingest 10 "
        "(30 messages gone)",
    ]
    assert position_problems({0: 0}, {0: (0, 0)}) == []  # an empty topic, nothing recorded


def test_topic_ids_become_stable_non_negative_63_bit_numbers() -> None:
    a, b = fingerprint("AaIx7T3HdUOC/IxQH8orGw"), fingerprint("AaIx7ubXcPC2feqSMufIhg")
    assert a != b and 0 <= a < 2**63 and 0 <= b < 2**63
    assert a == fingerprint("AaIx7T3HdUOC/IxQH8orGw")


def test_the_error_names_the_topic_the_partitions_and_the_recovery() -> None:
    error = TopicReset("clickstream.events", ["partition 0: log ends at 607"])
    text = str(error)
    assert "'clickstream.events'" in text and "partition 0: log ends at 607" in text
    assert (
        "lakehouse ingest --topic clickstream.events --reset-offsets --i-know-data-may-be-missing"
        in text
    )
    assert "bronze.events_offset_resets" in text
