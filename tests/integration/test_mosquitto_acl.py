"""The production broker config and ACL (deploy/mosquitto/) against a real mosquitto 2.0.

Each test gets its own broker from tests/mqtt_broker.py: the production options, the production
ACL file itself, both production listeners as plain loopback ones (``broker.port`` = the ingest
listener, ``broker.probe_port`` = the probes' listener without TLS). Clients are paho-mqtt, used
directly because aiomqtt does not expose the PUBACK reason code.

Negative checks ("nothing was delivered") are ordered, not timed: the denied message is sent
first and an allowed one after it on the same connection; the broker handles a connection's
packets in order, so once the allowed one has arrived the denied one would have arrived before.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.mqtt_broker import MosquittoBroker

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
WAIT_S = 5.0
GRACE_S = 0.2
NOT_AUTHORIZED = 0x87

INGEST = "netqos-ingest"
OPS = "netqos-ops"
SHARED = "$share/netqos/netqos/v1/probes/+/measurements"
DEADLETTER = "netqos/v1/deadletter/{}"


def meas(probe: str) -> str:
    return f"netqos/v1/probes/{probe}/measurements"


def status(probe: str) -> str:
    return f"netqos/v1/probes/{probe}/status"


class Conn:
    """One paho client with bounded, synchronous waits for CONNACK, PUBACK, SUBACK, messages."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        *,
        protocol: MQTTProtocolVersion = V311,
        client_id: str = "",
        clean: bool = True,
    ) -> None:
        kwargs: dict[str, Any] = {} if protocol == V5 else {"clean_session": clean}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        # paho's network thread sleeps up to the reconnect delay (1 s by default) after losing
        # the connection, and stopping it waits for that: keep it short.
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)  # type: ignore[arg-type]
        self.host, self.port, self.protocol = host, port, protocol
        self.connack: ReasonCode | None = None
        self.session_present = False
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._lock = threading.Condition()
        self._pubacks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._connacked = threading.Event()
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)

    # -- paho callbacks (network thread) --
    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: ReasonCode, _p: Any) -> None:
        if self.connack is None:
            self.connack = rc
            self.session_present = bool(flags.session_present)
        self._connacked.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        self.disconnected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self._lock:
            self._pubacks[mid] = rc
            self._lock.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any) -> None:
        with self._lock:
            self._subacks[mid] = rcs
            self._lock.notify_all()

    # -- API --
    def connect(self) -> ReasonCode:
        """Connect and wait for the CONNACK; a refused client is stopped (no reconnect loop)."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._connacked.wait(WAIT_S):
            self.close()
            raise TimeoutError(f"no CONNACK within {WAIT_S} s")
        assert self.connack is not None
        if self.connack.is_failure:
            self.disconnected.wait(WAIT_S)  # the broker closes the connection after the CONNACK
            self.close()
        return self.connack

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> ReasonCode | None:
        """Publish; for QoS 1 wait for the PUBACK and return its reason code."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            info.wait_for_publish(WAIT_S)
            return None
        with self._lock:
            if not self._lock.wait_for(lambda: info.mid in self._pubacks, WAIT_S):
                raise TimeoutError(f"no PUBACK for {topic!r} within {WAIT_S} s")
            return self._pubacks.pop(info.mid)

    def subscribe(self, *topics: str, qos: int = 1) -> list[ReasonCode]:
        _rc, mid = self.client.subscribe([(t, qos) for t in topics])
        assert mid is not None
        with self._lock:
            if not self._lock.wait_for(lambda: mid in self._subacks, WAIT_S):
                raise TimeoutError(f"no SUBACK for {topics} within {WAIT_S} s")
            return self._subacks.pop(mid)

    def expect(self, n: int) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + WAIT_S
        got: list[mqtt.MQTTMessage] = []
        while len(got) < n:
            try:
                got.append(self.messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(
                    f"received {len(got)} of {n} messages within {WAIT_S} s: {_show(got)}"
                ) from None
        return got

    def assert_silent(self) -> None:
        try:
            msg = self.messages.get(timeout=GRACE_S)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {_show([msg])}")

    def close(self) -> None:
        # disconnect() also when not connected: it ends paho's reconnect attempts.
        self.client.disconnect()
        self.client.loop_stop()


def _show(msgs: list[mqtt.MQTTMessage]) -> list[tuple[str, bytes]]:
    return [(m.topic, bytes(m.payload[:40])) for m in msgs]


def _ok(rc: ReasonCode | None) -> bool:
    return rc is not None and not rc.is_failure


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    users = {u: f"pw-{u}-{secrets.token_hex(6)}" for u in ("p1", "p2", INGEST, OPS)}
    with MosquittoBroker(users) as b:
        yield b


Connector = Callable[..., Conn]


@pytest.fixture
def conn(broker: MosquittoBroker) -> Iterator[Connector]:
    """conn(username, ...) -> a connected Conn (asserted accepted unless refused_ok=True).

    Probes go to the probe listener, the service accounts to the ingest listener, unless `port`
    says otherwise. Everything is closed at the end of the test.
    """
    opened: list[Conn] = []

    def make(
        username: str | None,
        *,
        password: str | None = None,
        port: int | None = None,
        protocol: MQTTProtocolVersion = V311,
        client_id: str = "",
        clean: bool = True,
        refused_ok: bool = False,
    ) -> Conn:
        if port is None:
            port = broker.port if username in (INGEST, OPS) else broker.probe_port
        if password is None and username is not None:
            password = broker.users.get(username, "no-such-user")
        # allow_zero_length_clientid is false in production: every client names itself.
        client_id = client_id or f"{username or 'anonymous'}-{secrets.token_hex(3)}"
        c = Conn(broker.host, port, username, password, protocol=protocol, client_id=client_id, clean=clean)
        opened.append(c)
        rc = c.connect()
        if not refused_ok:
            assert not rc.is_failure, f"{username} refused: {rc}\n{broker.log_tail()}"
        return c

    yield make
    for c in opened:
        c.close()


# -- probes publish only under their own id ------------------------------------------------------


def test_probe_publishes_own_measurements_to_shared_ingest(conn: Connector) -> None:
    ingest = conn(INGEST, client_id="netqos-ingest-1")
    assert [rc.value for rc in ingest.subscribe(SHARED)] == [1]
    p1 = conn("p1")

    assert _ok(p1.publish(meas("p1"), b'{"probe_id": "p1"}'))

    (msg,) = ingest.expect(1)
    assert (msg.topic, msg.payload, msg.qos) == (meas("p1"), b'{"probe_id": "p1"}', 1)


@pytest.mark.parametrize("protocol", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_publish_under_another_probe_id_is_dropped(conn: Connector, protocol: MQTTProtocolVersion) -> None:
    ingest = conn(INGEST, client_id="netqos-ingest-1")
    ops = conn(OPS)
    ingest.subscribe(SHARED)
    ops.subscribe(status("+"), DEADLETTER.format("#"))
    p1 = conn("p1", protocol=protocol)

    forbidden = [
        meas("p2"),
        status("p2"),
        DEADLETTER.format("bad_json"),
        "netqos/v1/probes/p1/measurements/extra",
        "netqos/v1/probes/p1/config",
        "netqos/v1/other",
    ]
    codes = {topic: p1.publish(topic, b"forged") for topic in forbidden}
    p1.publish(meas("p2"), b"forged-qos0", qos=0)
    if protocol == V5:
        # MQTT 5: the PUBACK says "not authorised".
        assert {t: rc.value for t, rc in codes.items() if rc} == dict.fromkeys(forbidden, NOT_AUTHORIZED)
    else:
        # MQTT 3.1.1 has no way to say so: the broker drops the message and still sends a
        # plain PUBACK. The publisher cannot tell; the ingest's topic-vs-payload check stays needed.
        assert {t: rc.value for t, rc in codes.items() if rc} == dict.fromkeys(forbidden, 0)

    # The barrier: an allowed publish after the forbidden ones, on the same connection.
    assert _ok(p1.publish(meas("p1"), b"allowed"))
    assert _show(ingest.expect(1)) == [(meas("p1"), b"allowed")]
    ingest.assert_silent()
    ops.assert_silent()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("listener", ["ingest", "probe"])
@pytest.mark.parametrize(
    ("username", "password"),
    [("p1", "wrong-password"), ("nobody", "whatever"), (None, None), ("p1", "")],
    ids=["wrong-password", "unknown-user", "anonymous", "empty-password"],
)
def test_bad_credentials_are_refused(
    broker: MosquittoBroker,
    conn: Connector,
    protocol: MQTTProtocolVersion,
    listener: str,
    username: str | None,
    password: str | None,
) -> None:
    port = broker.port if listener == "ingest" else broker.probe_port
    c = conn(username, password=password, port=port, protocol=protocol, refused_ok=True)
    # CONNACK "not authorised": 3.1.1 return code 5, MQTT 5 reason code 0x87 (paho reports both
    # as ReasonCode 0x87).
    assert c.connack is not None and c.connack.value == NOT_AUTHORIZED, c.connack
    assert c.disconnected.is_set()


def test_probe_cannot_read_other_probes(conn: Connector) -> None:
    p1 = conn("p1")
    # mosquitto 2.0.11's acl_file never refuses a SUBSCRIBE: every filter is granted...
    granted = p1.subscribe(meas("+"), status("+"), meas("p2"), "#", SHARED)
    assert [rc.value for rc in granted] == [1] * 5
    ingest = conn(INGEST)
    ingest.subscribe(meas("+"))
    p2 = conn("p2")

    assert _ok(p2.publish(status("p2"), b"online", retain=True))
    assert _ok(p2.publish(meas("p2"), b"p2-batch"))

    # ...but delivery is checked against `read`: the ingest gets p2's batch, p1 gets nothing.
    assert _show(ingest.expect(1)) == [(meas("p2"), b"p2-batch")]
    ops = conn(OPS)
    ops.subscribe(status("+"))
    assert _show(ops.expect(1)) == [(status("p2"), b"online")]
    p1.assert_silent()
    # Not even the retained status when subscribing afterwards.
    p1.subscribe(status("p2"))
    p1.assert_silent()


# -- service accounts ----------------------------------------------------------------------------


def test_ingest_publishes_dead_letters_but_cannot_pose_as_a_probe(conn: Connector) -> None:
    ops = conn(OPS)
    ops.subscribe(DEADLETTER.format("#"))
    ingest = conn(INGEST, protocol=V5)
    ingest.subscribe(meas("+"))

    assert _ok(ingest.publish(DEADLETTER.format("probe_mismatch"), b"refused batch"))
    assert _show(ops.expect(1)) == [(DEADLETTER.format("probe_mismatch"), b"refused batch")]

    for topic in (meas("p1"), meas(INGEST), status(INGEST), status("p1")):
        rc = ingest.publish(topic, b"forged")
        assert rc is not None and rc.value == NOT_AUTHORIZED, topic
    ingest.assert_silent()


def test_ops_is_read_only(conn: Connector) -> None:
    ops = conn(OPS, protocol=V5)
    for topic in (status("p1"), meas("p1"), meas(OPS), status(OPS), DEADLETTER.format("x")):
        rc = ops.publish(topic, b"x")
        assert rc is not None and rc.value == NOT_AUTHORIZED, topic


def test_retained_status_survives_a_restart(broker: MosquittoBroker, conn: Connector) -> None:
    p1 = conn("p1", protocol=V5)
    assert _ok(p1.publish(status("p1"), b'{"state": "online"}', retain=True))
    p1.close()

    broker.stop()
    broker.start()

    ops = conn(OPS)
    ops.subscribe(status("+"))
    (msg,) = ops.expect(1)
    assert (msg.topic, msg.payload, msg.retain) == (status("p1"), b'{"state": "online"}', True)
    p2 = conn("p2")
    p2.subscribe(status("+"))
    p2.assert_silent()


# -- persistent sessions ---------------------------------------------------------------------------


def _offline_ingest_session(conn: Connector, client_id: str) -> None:
    """A persistent (clean session false) ingest session subscribed to SHARED, then offline."""
    ingest = conn(INGEST, client_id=client_id, clean=False)
    ingest.subscribe(SHARED)
    ingest.close()


def test_queued_qos1_messages_survive_a_broker_restart(broker: MosquittoBroker, conn: Connector) -> None:
    _offline_ingest_session(conn, "netqos-ingest-1")
    p1 = conn("p1")
    sent = [f"batch-{i}".encode() for i in range(20)]
    for payload in sent:
        assert _ok(p1.publish(meas("p1"), payload))
    p1.close()

    broker.stop()  # SIGTERM: mosquitto writes mosquitto.db as it exits
    assert broker.db_path.stat().st_size > 0
    broker.start()

    ingest = conn(INGEST, client_id="netqos-ingest-1", clean=False)
    assert ingest.session_present
    got = ingest.expect(len(sent))
    assert [m.payload for m in got] == sent
    assert {m.topic for m in got} == {meas("p1")}
    ingest.assert_silent()


def test_sigkill_loses_what_was_not_autosaved(broker: MosquittoBroker, conn: Connector) -> None:
    """A crash keeps the state of the last save (a clean stop, or autosave_interval, 60 s in
    production): the session is back, the messages queued after that save are not."""
    _offline_ingest_session(conn, "netqos-ingest-1")
    broker.stop()
    broker.start()
    p1 = conn("p1")
    assert _ok(p1.publish(meas("p1"), b"acknowledged, then lost"))
    p1.close()

    broker.kill()
    broker.start()

    ingest = conn(INGEST, client_id="netqos-ingest-1", clean=False)
    assert ingest.session_present
    ingest.assert_silent()


def test_probe_cannot_take_over_an_ingest_session(broker: MosquittoBroker, conn: Connector) -> None:
    _offline_ingest_session(conn, "netqos-ingest-1")
    p1 = conn("p1")
    assert _ok(p1.publish(meas("p1"), b"queued for the ingest"))

    # On the probe listener use_username_as_clientid replaces the client id with the username:
    # asking for the ingest's client id gets p1 its own session, the ingest's stays untouched.
    p1.close()
    thief = conn("p1", client_id="netqos-ingest-1", clean=False)
    assert not thief.session_present
    thief.close()

    ingest = conn(INGEST, client_id="netqos-ingest-1", clean=False)
    assert ingest.session_present
    assert _show(ingest.expect(1)) == [(meas("p1"), b"queued for the ingest")]


def test_client_id_takeover_on_the_ingest_listener_drops_the_queue(
    broker: MosquittoBroker, conn: Connector
) -> None:
    """Why the ingest listener stays on loopback and the probes' one forces client ids: where
    client ids are free, a probe that knows an ingest worker's client id takes over its session
    and the broker throws the queued messages away (they fail the probe's read ACL)."""
    _offline_ingest_session(conn, "netqos-ingest-1")
    p1 = conn("p1")
    assert _ok(p1.publish(meas("p1"), b"queued for the ingest"))
    p1.close()

    thief = conn("p1", port=broker.port, client_id="netqos-ingest-1", clean=False)
    assert thief.session_present  # it got the ingest's session...
    thief.assert_silent()  # ...but not its messages: the read ACL still holds
    thief.close()

    ingest = conn(INGEST, client_id="netqos-ingest-1", clean=False)
    ingest.assert_silent()  # the queued message is gone


# -- accounts: add, rotate, remove (mosquitto_passwd + SIGHUP) -------------------------------------


def test_add_rotate_remove_a_probe_with_reload(broker: MosquittoBroker, conn: Connector) -> None:
    ingest = conn(INGEST)
    ingest.subscribe(meas("+"))
    refused = conn("p3", password="pw-3", refused_ok=True)
    assert refused.connack is not None and refused.connack.value == NOT_AUTHORIZED

    broker.add_user("p3", "pw-3")  # mosquitto_passwd -b, then SIGHUP
    p3 = conn("p3", password="pw-3")
    assert _ok(p3.publish(meas("p3"), b"hello"))
    assert _show(ingest.expect(1)) == [(meas("p3"), b"hello")]

    # Rotation: at the reload the broker re-checks connected clients against the new password
    # file and closes p3's connection; only the new password works afterwards.
    broker.add_user("p3", "pw-3-new")
    assert p3.disconnected.wait(WAIT_S)
    old = conn("p3", password="pw-3", refused_ok=True)
    assert old.connack is not None and old.connack.value == NOT_AUTHORIZED
    p3 = conn("p3", password="pw-3-new")
    assert _ok(p3.publish(meas("p3"), b"after rotation"))
    assert _show(ingest.expect(1)) == [(meas("p3"), b"after rotation")]

    # Removal closes a connected probe too.
    broker.remove_user("p3")
    assert p3.disconnected.wait(WAIT_S)
    gone = conn("p3", password="pw-3-new", refused_ok=True)
    assert gone.connack is not None and gone.connack.value == NOT_AUTHORIZED

    # Clients whose password did not change stayed connected through all three reloads.
    assert not ingest.disconnected.is_set()
    p1 = conn("p1")
    assert _ok(p1.publish(meas("p1"), b"still here"))
    assert _show(ingest.expect(1)) == [(meas("p1"), b"still here")]


# -- size limit --------------------------------------------------------------------------------------


def test_payload_over_256_kib_is_dropped(conn: Connector) -> None:
    ingest = conn(INGEST)
    ingest.subscribe(meas("+"))
    p1 = conn("p1")
    limit = 256 * 1024

    assert _ok(p1.publish(meas("p1"), b"x" * limit))
    # One byte more: dropped, and an MQTT 3.1.1 publisher still gets a plain PUBACK.
    assert _ok(p1.publish(meas("p1"), b"y" * (limit + 1)))
    assert _ok(p1.publish(meas("p1"), b"after"))

    got = ingest.expect(2)
    assert [(m.payload[:1], len(m.payload)) for m in got] == [(b"x", limit), (b"a", 5)]
    assert p1.client.is_connected()
