"""Production instances behind nginx, played by Twilio: scale, a dead instance, key rotation, SIGTERM."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack, suppress

import pytest
from helpers import SERVICE, HalfSentWebhook, gunicorn_setting, production_settings
from itsdangerous import BadSignature

from devtools.servers import Deadline, http_status, wait_until
from responder import create_app
from session_cookie import COOKIE_NAME

from .cluster import NEW_KEY, OLD_KEY, Instance, reply_count

pytestmark = pytest.mark.integration


def listening(port: int) -> bool:
    """Tell whether 127.0.0.1:port accepts TCP connections."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def retried_requests(cluster) -> list[list[str]]:
    """The webhook requests nginx passed to more than one instance."""
    return [tries for tries in cluster.nginx.upstream_tries() if len(tries) > 1]


def cookies_signed_only_with(key: str, traffic, tmp_path) -> bool:
    """Whether every pair's cookie verifies under `key` alone."""
    app = create_app(production_settings(SECRET_KEY=key), instance_path=str(tmp_path))
    serializer = app.session_interface.get_signing_serializer(app)
    try:
        for sender in traffic.senders:
            serializer.loads(traffic.phone.jars[(sender, SERVICE)][COOKIE_NAME].value)
    except BadSignature:
        return False
    return True


def restart(instance: Instance, secret_key: str, fallbacks: str, deadline: Deadline) -> None:
    """Stop an instance with SIGTERM, start it on the same port with new keys, let it serve a while."""
    assert instance.stop() == 0, f"{instance.name} did not shut down cleanly"
    instance.start(secret_key, fallbacks)
    instance.wait_healthy(deadline.left())
    # nginx tries a failed instance again after fail_timeout (5 s); stopping the next one before that
    # would leave it nothing to send to. Old and new settings then serve side by side for a while.
    wait_until(
        lambda: len(instance.webhooks_of_run()) >= 200,
        deadline.left(),
        f"{instance.name} to serve 200 messages after its restart",
    )


def test_conversations_spread_over_instances_keep_exact_counts(cluster):
    """200 interleaved conversations of 10 messages: exact counts, both instances serving."""
    deadline = Deadline(90)
    traffic = cluster.conversations(pairs=200, messages=10)
    traffic.join(deadline.left())

    assert not traffic.problems, traffic.summary()
    assert traffic.sent == 2000
    served = [len(instance.webhooks()) for instance in cluster.instances]
    assert sum(served) == 2000, served  # nothing lost, nothing handled twice
    assert min(served) >= 500, f"round robin should share the traffic, got {served}"
    assert not [
        w
        for i in cluster.instances
        for w in i.webhooks()
        if w.get("fresh", "new") != "new" or w["outcome"] != "reply"
    ]


def test_killed_instance_loses_and_doubles_no_message(cluster):
    """SIGKILL one instance at 30 % of the traffic: nginx retries on the other, every count stays exact."""
    deadline = Deadline(90)
    victim, survivor = cluster.instances
    traffic = cluster.conversations(pairs=200, messages=10)
    traffic.wait_for(600, deadline.left())
    victim.kill()
    traffic.join(deadline.left())

    assert not traffic.problems, traffic.summary()
    assert traffic.sent == 2000
    retried = retried_requests(cluster)
    assert retried, "no request met the dead instance; the kill came too late to test anything"
    assert all(tries[-1] == survivor.address for tries in retried), retried
    assert len(survivor.webhooks()) >= 2000 - len(victim.webhooks())


def test_rolling_key_rotation_keeps_every_conversation(cluster, tmp_path):
    """A two-phase rolling SECRET_KEY rotation under traffic: no conversation starts over."""
    deadline = Deadline(150)
    traffic = cluster.conversations(pairs=100, messages=None)
    traffic.wait_for(300, deadline.left())
    assert cookies_signed_only_with(OLD_KEY, traffic, tmp_path / "old")
    before = traffic.snapshot()

    # Phase 1: every instance learns the new key while still signing with the old one.
    for instance in cluster.instances:
        restart(instance, OLD_KEY, NEW_KEY, deadline)
    # Phase 2: every instance signs with the new key and still reads the old one.
    for instance in cluster.instances:
        restart(instance, NEW_KEY, OLD_KEY, deadline)
    rotated = traffic.snapshot()
    traffic.wait_for(traffic.sent + 300, deadline.left())
    traffic.stop()
    traffic.join(deadline.left())

    assert not traffic.problems, traffic.summary()
    after = traffic.snapshot()
    assert all(before[s] >= 1 and after[s] > rotated[s] for s in traffic.senders), (
        "every conversation must span the rotation"
    )
    assert not [w for i in cluster.instances for w in i.webhooks() if w.get("fresh", "new") != "new"]
    assert cookies_signed_only_with(NEW_KEY, traffic, tmp_path / "new")


def test_sigterm_lets_in_flight_requests_finish(cluster):
    """SIGTERM one instance under traffic: what it had started is answered, the rest goes to the other."""
    deadline = Deadline(90)
    stopping, survivor = cluster.instances
    traffic = cluster.conversations(pairs=200, messages=10)
    traffic.wait_for(600, deadline.left())
    # One request certainly in flight: all but its last bytes are sent when SIGTERM comes; the worker
    # has accepted it and must answer it before it exits.
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1", "Connection": "close"}
    in_flight = HalfSentWebhook(stopping.port, traffic.phone, "+15005559999", forwarded)  # as nginx sends it
    time.sleep(0.3)
    signalled_at = time.time()
    stopping.begin_stop()
    wait_until(lambda: not listening(stopping.port), deadline.left(), f"{stopping.name} to stop listening")
    status, text = in_flight.finish()
    exit_code = stopping.wait_stopped(grace=25.0)
    stopped_after = time.time() - signalled_at
    traffic.join(deadline.left())

    assert (status, reply_count(text)) == (200, 1), (status, text)
    assert exit_code == 0, f"{stopping.name} was killed after the grace period instead of stopping"
    assert stopped_after < gunicorn_setting("graceful_timeout"), "nginx's idle connections held a worker"
    assert not traffic.problems, traffic.summary()
    assert traffic.sent == 2000
    # A request the stopping instance handled but could not deliver would be retried on the survivor.
    handled_twice = {w["sid"] for w in stopping.webhooks()} & {w["sid"] for w in survivor.webhooks()}
    assert not handled_twice, f"{len(handled_twice)} requests were cut off after being handled"
    assert len(stopping.webhooks()) + len(survivor.webhooks()) == 2000 + 1
    finished_late = [w for w in stopping.webhooks() if w["ts"] >= signalled_at]
    assert finished_late, "nothing was in flight"
    print(
        f"SIGTERM: {stopping.name} exited {exit_code} after {stopped_after:.2f} s, answered "
        f"{len(finished_late)} requests after the signal; nginx retried {len(retried_requests(cluster))}"
    )


def test_nginx_does_not_expose_metrics(cluster):
    """Prometheus scrapes the instances directly; through nginx /metrics does not exist."""
    assert http_status(cluster.nginx.port, "/metrics", host="sms.example.com") == 404
    assert http_status(cluster.instances[0].port, "/metrics") == 200


def test_nginx_refuses_hosts_other_than_the_public_one(cluster):
    """Only the configured host reaches the instances, so clients cannot choose the signed URL's host."""
    assert http_status(cluster.nginx.port, "/healthz", host="sms.example.com") == 200
    with pytest.raises(OSError):  # 444: nginx closes the connection without an answer
        http_status(cluster.nginx.port, "/healthz", host="evil.example.net")


def test_a_flood_of_trickling_bodies_from_one_address_leaves_webhooks_answered(cluster):
    """One address holding 2,100 trickling webhooks gets limit_conn's share; Twilio's traffic goes on."""
    refused = 0
    with ExitStack() as stack:
        held = []
        for _ in range(2100):
            sock = stack.enter_context(socket.socket())
            sock.settimeout(5)
            sock.bind(("127.0.0.2", 0))  # the flood's own address; Twilio's traffic comes from 127.0.0.1
            sock.connect(("127.0.0.1", cluster.nginx.port))
            sock.sendall(
                b"POST /sms HTTP/1.1\r\nHost: sms.example.com\r\nContent-Length: 1000\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\nF"
            )
            held.append(sock)
        for sock in held:
            with suppress(OSError):
                refused += sock.recv(12).startswith(b"HTTP/1.1 429")
        traffic = cluster.conversations(pairs=20, messages=5, workers=4)
        traffic.join(60)
    print(f"nginx refused {refused} of 2,100 trickling connections from one address with 429")
    assert refused >= 2100 - 200
    assert traffic.sent == 100 and not traffic.problems, traffic.summary()
