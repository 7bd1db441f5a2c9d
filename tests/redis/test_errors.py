"""One classification of Redis errors, checked against what a real server replies."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis

from daemon import exitcodes
from daemon.redis.errors import RECOVERABLE, ProblemKind, classify
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.timeout(30)

SECRET = "Zq8-never-shown-pw"


def _raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except RECOVERABLE as exc:
        return exc
    raise AssertionError("the call did not fail")


def test_wrong_password_and_noperm_are_configuration(redis_factory: type[RedisServer]) -> None:
    server = redis_factory(password="right-password").start()
    wrong = redis.Redis(port=server.port, password=SECRET, socket_timeout=5)
    problem = classify(_raised(wrong.ping))
    assert (problem.kind, problem.reason) == (ProblemKind.CONFIGURATION, "auth")
    assert SECRET not in problem.message
    assert exitcodes.for_problem(problem.kind) == exitcodes.CONFIG

    admin = server.client()
    user = f"u{uuid.uuid4().hex[:8]}"
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw-of-user", "~*", "-@all", "+ping")
    limited = redis.Redis(port=server.port, username=user, password="pw-of-user")
    assert limited.ping()
    problem = classify(_raised(lambda: limited.get("k")))
    assert (problem.kind, problem.reason) == (ProblemKind.CONFIGURATION, "noperm")
    for client in (wrong, admin, limited):
        client.close()


def test_unreachable_loading_readonly_oom_are_unavailable(redis_server: RedisServer) -> None:
    nobody = redis.Redis(port=free_port(), socket_connect_timeout=1)
    problem = classify(_raised(nobody.ping))
    assert (problem.kind, problem.reason) == (ProblemKind.UNAVAILABLE, "connection")
    assert exitcodes.for_problem(problem.kind) == exitcodes.UNAVAILABLE
    # Replies a real server sends in those states, as redis-py raises them.
    for reply, reason in (
        (redis.ReadOnlyError("You can't write against a read only replica."), "readonly"),
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory"), "oom"),
        (redis.BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (redis.TimeoutError("Timeout reading from socket"), "timeout"),
    ):
        assert (classify(reply).kind, classify(reply).reason) == (ProblemKind.UNAVAILABLE, reason)
    nobody.close()


def test_wrongtype_is_a_data_error(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.rpush("a-list", "x")
    problem = classify(_raised(lambda: client.get("a-list")))
    assert (problem.kind, problem.reason) == (ProblemKind.DATA, "wrongtype")
    assert exitcodes.for_problem(problem.kind) == exitcodes.DATAERR
    client.close()


def test_worst_exit_code_needs_a_person_first() -> None:
    assert exitcodes.worst() == exitcodes.OK
    assert exitcodes.worst(exitcodes.TEMPFAIL, exitcodes.FAILURE) == exitcodes.FAILURE
    assert exitcodes.worst(exitcodes.UNAVAILABLE, exitcodes.CONFIG) == exitcodes.CONFIG
