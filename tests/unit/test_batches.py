"""How silver/gold cut many date partitions into memory-bounded batches."""

import datetime as dt

from spark_jobs.incremental import batch_dates

D = [dt.date(2025, 1, 1) + dt.timedelta(days=k) for k in range(6)]


def test_batches_hold_at_most_the_row_limit_in_date_order():
    rows = dict(zip(D, [40, 50, 10, 30, 70, 5], strict=True))
    assert batch_dates(set(D), rows, 100) == [{D[0], D[1], D[2]}, {D[3], D[4]}, {D[5]}]


def test_a_day_over_the_limit_is_a_batch_of_its_own_and_nothing_is_lost():
    rows = {D[0]: 10, D[1]: 500, D[2]: 10}
    parts = batch_dates({D[0], D[1], D[2]}, rows, 100)
    assert parts == [{D[0]}, {D[1]}, {D[2]}]


def test_days_without_rows_join_the_current_batch():
    parts = batch_dates(set(D), {}, 100)
    assert parts == [set(D)]
    assert batch_dates(set(), {}, 100) == []
