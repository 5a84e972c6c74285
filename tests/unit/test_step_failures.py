"""How steps fail: a Spark Connect server that does not answer is retried for a bounded time,
each retry said; a full disk fails at once (retrying cannot free space); Dagster's own retries
are reported as they happen."""

from __future__ import annotations

import errno
import socket
import time

import dagster as dg
import pytest

from lakehouse.core.lake import is_disk_full
from lakehouse.core.spark import retry_backoffs, spark_session
from orchestration.lib.retries import failing_fast_when_the_disk_is_full
from orchestration.lib.runs import Progress, _Follower


def test_the_retry_budget_doubles_from_half_a_second_and_stays_within_its_bound() -> None:
    assert retry_backoffs(30) == [0.5, 1, 2, 4, 8, 8]
    assert retry_backoffs(0) == []
    assert sum(retry_backoffs(600)) <= 600 and max(retry_backoffs(600)) == 8


def test_a_spark_connect_server_that_does_not_answer_fails_in_bounded_time_saying_so() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(Exception, match="UNAVAILABLE|failed to connect"):
        spark_session(f"sc://127.0.0.1:{port}", unavailable_seconds=2, on_retry=said.append)
    assert time.monotonic() - started < 15
    assert len(said) == len(retry_backoffs(2)) == 2
    assert said[0].startswith(f"Spark Connect at sc://127.0.0.1:{port} does not answer (")
    assert "retry 1 of 2 in 0.5s" in said[0] and "retry 2 of 2 in 1s" in said[1]


@pytest.mark.parametrize(
    ("error", "full"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (RuntimeError("Failed to write file: Generic LocalFileSystem error: os error 28"), True),
        (ValueError("a quality gate failed"), False),
        (OSError(errno.EACCES, "Permission denied"), False),
    ],
)
def test_a_full_disk_is_recognised_by_errno_or_by_its_message(
    error: BaseException, full: bool
) -> None:
    assert is_disk_full(error) is full


def test_a_full_disk_is_recognised_in_the_cause_of_an_error() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("the batch could not be written") from exc
    except RuntimeError as outer:
        assert is_disk_full(outer)


ATTEMPTS: list[str] = []
RETRY = dg.RetryPolicy(max_retries=2, delay=0.1)


@dg.op(retry_policy=RETRY)
def write_to_a_full_disk() -> None:
    ATTEMPTS.append("disk")
    with failing_fast_when_the_disk_is_full("silver.events", "/lake"):
        raise OSError(errno.ENOSPC, "No space left on device")


@dg.op(retry_policy=RETRY)
def lose_the_server_once() -> None:
    ATTEMPTS.append("server")
    if ATTEMPTS.count("server") == 1:
        with failing_fast_when_the_disk_is_full("silver.events", "/lake"):
            raise ConnectionError("Spark Connect went away")


@dg.job
def full_disk() -> None:
    write_to_a_full_disk()


@dg.job
def server_restart() -> None:
    lose_the_server_once()


def progress_of(job: dg.JobDefinition) -> tuple[dg.ExecuteInProcessResult, list[Progress]]:
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    seen: list[Progress] = []
    _Follower(instance, result.run_id, 1, seen.append)._read()
    return result, seen


def test_a_full_disk_fails_the_step_once_with_what_to_do() -> None:
    ATTEMPTS.clear()
    result, seen = progress_of(full_disk)
    assert not result.success
    assert ATTEMPTS == ["disk"]  # not retried
    failure = result.get_step_failure_events()[0].step_failure_data
    message = failure.user_failure_data.description
    assert message.startswith("silver.events: the disk under /lake is full (")
    assert "every table keeps its last version" in message
    assert not any("retries" in p.message for p in seen)


def test_dagster_retries_are_reported_as_notices_with_the_error_and_the_wait() -> None:
    ATTEMPTS.clear()
    result, seen = progress_of(server_restart)
    assert result.success and ATTEMPTS == ["server", "server"]
    retries = [p for p in seen if "Dagster retries it" in p.message]
    assert len(retries) == 1 and retries[0].notice
    assert retries[0].message.startswith("lose_the_server_once: failed (Spark Connect went away)")
    assert not any(p.notice for p in seen if p not in retries)


def test_a_grpc_error_is_told_by_its_details_line() -> None:
    from dagster._utils.error import SerializableErrorInfo

    from orchestration.lib.runs import error_message

    grpc = SerializableErrorInfo(
        "<_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.UNAVAILABLE\n"
        '\tdetails = "failed to connect to all addresses"\n\tdebug_error_string = "…">\n',
        [],
        "SparkConnectGrpcException",
    )
    wrapped = SerializableErrorInfo("retry requested", [], "RetryRequestedFromPolicy", grpc)
    assert error_message(wrapped) == "failed to connect to all addresses"
    plain = SerializableErrorInfo("builtins.ValueError: bad row\n", [], "ValueError")
    assert error_message(plain) == "bad row"
