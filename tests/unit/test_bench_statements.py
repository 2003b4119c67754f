"""The sweep benchmark's statement counts: the deadline phase runs a few set-based
statements per batch, so its per-instance numbers are fractions and must not round
to nothing."""

from __future__ import annotations

from collections import Counter

from bench.sweep.statements import per_instance


def test_a_batch_of_set_based_statements_is_reported_as_counted() -> None:
    batch = Counter(
        {
            "SELECT sweep_jobs": 1,
            "UPDATE sweep_jobs": 1,
            "INSERT statekit_transitions": 1,
            "INSERT statekit_compensations": 1,
            "(commit)": 1,
        }
    )
    text = per_instance(batch, 500)
    assert text.startswith("4 statements + 1 transaction for 500 instances")
    assert "0.008 statements + 0.002 transactions per instance" in text
    assert "UPDATE sweep_jobs 0.002" in text
    assert "0.00 " not in text


def test_one_instance_at_a_time_reads_per_instance() -> None:
    drain = Counter({"SELECT statekit_compensations": 2_500, "(commit)": 1_500})
    text = per_instance(drain, 500)
    assert text.startswith("2,500 statements + 1,500 transactions for 500 instances")
    assert "5 statements + 3 transactions per instance" in text
    assert "SELECT statekit_compensations 5)" in text
