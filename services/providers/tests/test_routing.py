"""SelectProviders, ReportOutcome and AcquireSlot over gRPC, as the generation
service calls them, against the stack's registry."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import grpc
import pytest

from imagerouter.v1 import providers_pb2
from stack import ServiceSpec
from tests.conftest import registry_at


@pytest.fixture
def sim(simulator_base):
    return simulator_base(tag=f"routing-{uuid.uuid4().hex[:8]}")


def test_call_without_token_is_unauthenticated(registry):
    for metadata in ((), (("x-internal-token", "wrong"),)):
        with pytest.raises(grpc.RpcError) as raised:
            registry.stub.SelectProviders(
                providers_pb2.SelectProvidersRequest(size="512x512"),
                metadata=metadata,
                timeout=10,
            )
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_invalid_arguments_are_rejected(registry, fresh_registry):
    calls = [
        lambda: registry.select(routing="fastest"),
        lambda: registry.report("not-a-uuid", "success"),
        lambda: registry.report(str(uuid.uuid4()), "exploded"),
        lambda: registry.acquire("not-a-uuid"),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_slot_for_deleted_provider_is_not_found(registry, fresh_registry):
    with pytest.raises(grpc.RpcError) as raised:
        registry.acquire(str(uuid.uuid4()))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_filters_size_model_and_status(registry, new_provider, sim):
    new_provider(sim, name="wide", priority=1, supportedSizes=["512x512", "1024x1024"])
    new_provider(sim, name="narrow", priority=2, supportedSizes=["256x256"])
    new_provider(
        sim, name="dalle", priority=3, models=["dall-e-3"], supportedSizes=["512x512"]
    )
    new_provider(
        sim,
        name="resting",
        priority=0,
        status="maintenance",
        supportedSizes=["512x512"],
    )
    assert registry.select() == ["wide", "dalle"]
    # A provider that lists no models accepts any model name.
    assert registry.select(model="dall-e-3") == ["wide", "dalle"]
    assert registry.select(model="other-model") == ["wide"]
    assert registry.select(size="256x256") == ["narrow"]
    assert registry.select(size="1792x1024") == []
    assert registry.select(provider_name="dalle") == ["dalle"]
    assert registry.select(provider_name="resting") == []


def test_priority_orders_lowest_first(registry, new_provider, sim):
    for name, priority in (("third", 30), ("first", 10), ("second", 20)):
        new_provider(sim, name=name, priority=priority)
    for _ in range(5):
        assert registry.select(routing="priority") == ["first", "second", "third"]
    # The stack's default strategy is priority.
    assert registry.select() == ["first", "second", "third"]


def test_priority_ties_balanced_by_weight(registry, new_provider, sim):
    new_provider(sim, name="heavy", priority=1, weight=3)
    new_provider(sim, name="light", priority=1, weight=1)
    new_provider(sim, name="backup", priority=2, weight=100)
    firsts = Counter()
    for _ in range(400):
        order = registry.select(routing="priority")
        assert order[2] == "backup"
        firsts[order[0]] += 1
    # Expected 300 of 400 (weight 3 of 4); the bounds are seven standard
    # deviations of the binomial distribution away.
    assert 240 <= firsts["heavy"] <= 360, firsts


def test_cost_orders_cheapest_first(registry, new_provider, sim):
    new_provider(sim, name="dear", costPerImage="0.08", priority=1)
    new_provider(sim, name="cheap", costPerImage="0.010", priority=3)
    new_provider(sim, name="cheap-tie", costPerImage="0.01", priority=2)
    assert registry.select(routing="cost") == ["cheap-tie", "cheap", "dear"]


def test_latency_orders_fastest_first(registry, new_provider, sim):
    slow = new_provider(sim, name="slow", priority=1)
    fast = new_provider(sim, name="fast", priority=2)
    new_provider(sim, name="unmeasured", priority=0)
    for latency in (900, 1100, 1000):
        registry.report(slow["id"], "success", latency)
    for latency in (90, 110, 100):
        registry.report(fast["id"], "success", latency)
    # A fast failure is not a measure of how fast images come back.
    registry.report(slow["id"], "error", 5)
    assert registry.select(routing="latency") == ["fast", "slow", "unmeasured"]


def test_round_robin_rotates_every_selection(registry, new_provider, sim):
    for name in ("a", "b", "c"):
        new_provider(sim, name=name)
    orders = [registry.select(routing="round_robin") for _ in range(6)]
    rotations = [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for order in orders:
        assert order in rotations
    assert Counter(order[0] for order in orders) == {"a": 2, "b": 2, "c": 2}
    for earlier, later in zip(orders, orders[1:], strict=False):
        assert later == earlier[1:] + earlier[:1]


def test_circuit_opens_half_opens_and_closes(
    registry, new_provider, sim, client, admin
):
    flaky = new_provider(sim, name="flaky", priority=1)
    new_provider(sim, name="steady", priority=2)
    # CIRCUIT_FAILURE_THRESHOLD keeps its default of 5 in the test stack.
    for _ in range(4):
        registry.report(flaky["id"], "error")
    assert registry.select() == ["flaky", "steady"]
    registry.report(flaky["id"], "timeout")
    assert registry.select() == ["steady"]
    assert circuit_state(client, admin, flaky["id"]) == "open"
    refused = registry.acquire(flaky["id"])
    assert not refused.granted
    assert refused.reason == "circuit_open"

    # CIRCUIT_COOLDOWN_SECONDS is 2 in the test stack.
    time.sleep(2.2)
    assert circuit_state(client, admin, flaky["id"]) == "half_open"
    assert registry.select() == ["flaky", "steady"]
    trial = registry.acquire(flaky["id"])
    assert trial.granted
    # One trial call at a time: a second caller is refused while it runs.
    assert registry.select() == ["steady"]
    assert not registry.acquire(flaky["id"]).granted
    registry.report(flaky["id"], "error")
    assert circuit_state(client, admin, flaky["id"]) == "open"

    time.sleep(2.2)
    assert registry.acquire(flaky["id"]).granted
    registry.report(flaky["id"], "success")
    assert circuit_state(client, admin, flaky["id"]) == "closed"
    assert registry.select() == ["flaky", "steady"]


def circuit_state(client, admin, provider_id: str) -> str:
    response = client.get(f"/api/v1/providers/{provider_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]["health"]["circuitState"]


def test_rate_limited_report_pauses_provider(registry, new_provider, sim):
    busy = new_provider(sim, name="busy", priority=1)
    new_provider(sim, name="idle", priority=2)
    registry.stub.ReportOutcome(
        providers_pb2.ReportOutcomeRequest(
            provider_id=busy["id"], outcome="rate_limited", retry_after_seconds=1
        ),
        metadata=registry.metadata,
        timeout=10,
    )
    assert registry.select() == ["idle"]
    refused = registry.acquire(busy["id"])
    assert refused.reason == "paused"
    assert 0 < refused.retry_after_ms <= 1000
    time.sleep(1.2)
    assert registry.select() == ["busy", "idle"]


def test_slots_stop_at_rate_limit(registry, new_provider, sim):
    limited = new_provider(sim, name="limited", priority=1, rateLimit=3)
    new_provider(sim, name="open", priority=2)
    for _ in range(3):
        assert registry.select() == ["limited", "open"]
        assert registry.acquire(limited["id"]).granted
    assert registry.select() == ["open"]
    refused = registry.acquire(limited["id"])
    assert not refused.granted
    assert refused.reason == "rate_limited"
    assert 55_000 < refused.retry_after_ms <= 60_000


def test_selection_takes_first_slot(registry, new_provider, sim):
    limited = new_provider(sim, name="limited", priority=1, rateLimit=2)
    spare = new_provider(sim, name="spare", priority=2, rateLimit=2)

    def select(take: bool) -> providers_pb2.SelectProvidersResponse:
        return registry.stub.SelectProviders(
            providers_pb2.SelectProvidersRequest(
                size="512x512", n=1, take_first_slot=take
            ),
            metadata=registry.metadata,
            timeout=10,
        )

    # Without the flag no slot is taken or returned.
    assert not select(False).HasField("first_slot")
    first = select(True)
    assert [p.name for p in first.providers] == ["limited", "spare"]
    assert first.first_slot.granted
    # The slot counted against rateLimit like AcquireSlot's: one is left.
    assert registry.acquire(limited["id"]).granted
    assert not registry.acquire(limited["id"]).granted
    # Only the first candidate's slot is taken.
    after = select(True)
    assert [p.name for p in after.providers] == ["spare"]
    assert after.first_slot.granted
    assert registry.acquire(spare["id"]).granted
    assert not registry.acquire(spare["id"]).granted


def test_batched_reports_recorded_in_order(registry, new_provider, sim):
    flaky = new_provider(sim, name="flaky", priority=1)
    new_provider(sim, name="steady", priority=2)

    def report_all(*outcomes: str, provider_id: str = flaky["id"]) -> None:
        registry.stub.ReportOutcomes(
            providers_pb2.ReportOutcomesRequest(
                outcomes=[
                    providers_pb2.ReportOutcomeRequest(
                        provider_id=provider_id, outcome=outcome, latency_ms=50
                    )
                    for outcome in outcomes
                ]
            ),
            metadata=registry.metadata,
            timeout=10,
        )

    # Five failures open the circuit and the success after them closes it;
    # recorded in any other order, the circuit would end open.
    report_all("error", "error", "error", "timeout", "error", "success")
    assert registry.select() == ["flaky", "steady"]
    # Five failures in one batch reach the threshold of 5.
    report_all("error", "timeout", "error", "error", "error")
    assert registry.select() == ["steady"]

    # One malformed entry rejects the batch before anything is recorded.
    other = new_provider(sim, name="other", priority=3)
    for bad in ("exploded", "success"):
        with pytest.raises(grpc.RpcError) as raised:
            registry.stub.ReportOutcomes(
                providers_pb2.ReportOutcomesRequest(
                    outcomes=[
                        *[
                            providers_pb2.ReportOutcomeRequest(
                                provider_id=other["id"], outcome="error"
                            )
                        ]
                        * 5,
                        providers_pb2.ReportOutcomeRequest(
                            provider_id=other["id"] if bad != "success" else "x",
                            outcome=bad,
                        ),
                    ]
                ),
                metadata=registry.metadata,
                timeout=10,
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert registry.select() == ["steady", "other"]

    with pytest.raises(grpc.RpcError) as raised:
        report_all(*["success"] * 501, provider_id=other["id"])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 500" in (raised.value.details() or "")


def test_report_sent_twice_counts_once(registry, client, admin, new_provider, sim):
    flaky = new_provider(sim, name="flaky", priority=1)
    batch = providers_pb2.ReportOutcomesRequest(
        outcomes=[
            providers_pb2.ReportOutcomeRequest(
                provider_id=flaky["id"],
                outcome="error",
                latency_ms=30,
                report_id=uuid.uuid4().hex,
            )
            for _ in range(3)
        ]
    )
    for _ in range(2):
        registry.stub.ReportOutcomes(batch, metadata=registry.metadata, timeout=10)
    response = client.get(f"/api/v1/providers/{flaky['id']}", headers=admin.headers)
    health = response.json()["data"]["health"]
    assert health["consecutiveFailures"] == 3
    assert health["recentAttempts"] == 3
    assert health["circuitState"] == "closed"

    too_long = providers_pb2.ReportOutcomesRequest(
        outcomes=[
            providers_pb2.ReportOutcomeRequest(
                provider_id=flaky["id"], outcome="error", report_id="x" * 65
            )
        ]
    )
    with pytest.raises(grpc.RpcError) as raised:
        registry.stub.ReportOutcomes(too_long, metadata=registry.metadata, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_generation_skips_provider_at_rate_limit(
    client, new_provider, new_user, new_api_key, simulator_base, simulator_calls
):
    run = uuid.uuid4().hex[:8]
    limited_tag, spare_tag = f"limited-{run}", f"spare-{run}"
    limited = new_provider(simulator_base(tag=limited_tag), priority=1, rateLimit=2)
    spare = new_provider(simulator_base(tag=spare_tag), priority=2)
    key = new_api_key(new_user())
    served_by = []
    for _ in range(3):
        response = client.post(
            "/api/v1/images/generations",
            headers={"X-API-Key": key},
            json={"prompt": "a lantern", "size": "256x256"},
        )
        assert response.status_code == 200, response.text
        served_by.append(response.json()["data"]["provider"]["name"])
    assert served_by == [limited["name"], limited["name"], spare["name"]]
    assert simulator_calls(limited_tag)["count"] == 2
    assert simulator_calls(spare_tag)["count"] == 1


def test_second_registry_sees_changes_at_once(
    stack, registry, new_provider, sim, client, admin
):
    first = new_provider(sim, name="first", priority=1)
    new_provider(sim, name="second", priority=2)
    spec = second_registry_spec(stack)
    stack.start(spec)
    try:
        stack.wait_healthy(spec)
        address = f"127.0.0.1:{spec.env['GRPC_PORT']}"
        token = stack.common_env()["INTERNAL_SERVICE_TOKEN"]
        for other in registry_at(address, token):
            assert other.select() == ["first", "second"]
            changed = client.put(
                f"/api/v1/providers/{first['id']}/status",
                json={"status": "inactive"},
                headers=admin.headers,
            )
            assert changed.status_code == 200, changed.text
            assert other.select() == ["second"]

            edited = client.put(
                f"/api/v1/providers/{first['id']}",
                json={"status": "active", "priority": 3},
                headers=admin.headers,
            )
            assert edited.status_code == 200, edited.text
            assert other.select() == ["second", "first"]

            # Circuit state written through one registry is read by the other.
            for _ in range(5):
                registry.report(first["id"], "error")
            assert other.select() == ["second"]
    finally:
        stack.stop(spec.name)


def second_registry_spec(stack) -> ServiceSpec:
    """A second providers process on spare ports, sharing Postgres and Redis."""
    base = next(s for s in stack.service_specs() if s.name == "providers")
    http_port = stack.profile.port(21)
    grpc_port = stack.profile.port(22)
    return ServiceSpec(
        name="providers-replica",
        command=base.command,
        cwd=base.cwd,
        env={
            **base.env,
            "HTTP_PORT": str(http_port),
            "GRPC_PORT": str(grpc_port),
            "MIGRATE_ON_START": "false",
        },
        health_url=f"http://127.0.0.1:{http_port}/healthz",
        ready_url=f"http://127.0.0.1:{http_port}/readyz",
    )


def test_cached_rows_follow_every_admin_write(
    registry, new_provider, sim, client, admin
):
    provider = new_provider(sim, name="before", priority=1)
    assert registry.select() == ["before"]

    renamed = client.put(
        f"/api/v1/providers/{provider['id']}",
        json={"name": "after", "supportedSizes": ["256x256"]},
        headers=admin.headers,
    )
    assert renamed.status_code == 200, renamed.text
    assert registry.select() == []
    assert registry.select(size="256x256") == ["after"]

    added = new_provider(sim, name="added", priority=2)
    assert registry.select(size="256x256") == ["after", "added"]
    assert registry.acquire(added["id"]).granted

    deleted = client.delete(f"/api/v1/providers/{added['id']}", headers=admin.headers)
    assert deleted.status_code == 200, deleted.text
    assert registry.select(size="256x256") == ["after"]
    with pytest.raises(grpc.RpcError) as missing:
        registry.acquire(added["id"])
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
