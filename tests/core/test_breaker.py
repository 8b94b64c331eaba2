"""The circuit breaker shared by LLM deployments and MCP replicas."""

from vektor.core.breaker import CircuitBreaker


def test_closed_until_a_failure():
    breaker = CircuitBreaker(base_s=5)
    assert breaker.state(0) == "closed"
    assert breaker.available(0)
    assert breaker.acquire(0)
    assert not breaker.probing  # a closed breaker lets every call through
    assert breaker.acquire(0)


def test_consecutive_failures_open_it_for_a_growing_capped_cooldown():
    breaker = CircuitBreaker(base_s=5, max_s=60)
    cooldowns = []
    for _ in range(6):
        breaker.record_failure(100.0)
        cooldowns.append(breaker.cooldown_until - 100.0)
    assert cooldowns == [5, 10, 20, 40, 60, 60]
    assert breaker.state(159) == "open"
    assert not breaker.available(159)
    assert not breaker.acquire(159)


def test_a_success_closes_it_and_resets_the_cooldown():
    breaker = CircuitBreaker(base_s=2)
    breaker.record_failure(0)
    breaker.record_failure(0)
    breaker.record_success()
    assert breaker.state(0) == "closed"
    assert breaker.available(0)
    breaker.record_failure(10)
    assert breaker.cooldown_until == 12  # back to the base cooldown


def test_half_open_lets_one_probe_at_a_time():
    breaker = CircuitBreaker(base_s=5)
    breaker.record_failure(0)
    assert breaker.state(5) == "half-open"
    assert breaker.acquire(5)
    assert breaker.probing
    assert not breaker.available(5)  # the others go elsewhere while it is tested
    assert not breaker.acquire(5)
    breaker.record_success()
    assert breaker.state(5) == "closed"
    assert breaker.acquire(5)
    assert breaker.acquire(5)


def test_a_failed_probe_opens_it_for_the_next_cooldown():
    breaker = CircuitBreaker(base_s=5)
    breaker.record_failure(0)
    assert breaker.acquire(5)
    breaker.record_failure(5)
    assert breaker.state(5) == "open"
    assert breaker.cooldown_until == 15
    assert not breaker.acquire(14)
    assert breaker.acquire(15)  # half-open again: the next probe


def test_a_released_probe_lets_another_call_test_it():
    breaker = CircuitBreaker(base_s=5)
    breaker.record_failure(0)
    assert breaker.acquire(5)
    breaker.release()  # the probe was cancelled: no verdict on the upstream
    assert breaker.state(5) == "half-open"
    assert breaker.acquire(5)
