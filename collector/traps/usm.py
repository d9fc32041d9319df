"""The User-based Security Model (RFC 3414) for received SNMPv3 notifications.

A trap's sender is the authoritative engine: its keys are localized with the sender's
engine ID, which the receiver learns from the message. The expensive part of the key
derivation (password to key: one hash over 1 MiB, RFC 3414 A.2) depends on the password
only and is computed once per credential; localizing it to an engine ID is one more hash,
so a forged message with a new engine ID costs a few microseconds, not a key derivation.

Authentication: HMAC-MD5-96 and HMAC-SHA-96 (RFC 3414 6, 7), HMAC-SHA-2 (RFC 7860: SHA-224
truncated to 16 octets, SHA-256 to 24, SHA-384 to 32, SHA-512 to 48). Privacy: CBC-DES
(RFC 3414 8), CFB128-AES-128 (RFC 3826) and AES-192/256 with the key extension of
draft-blumenthal-aes-usm-04 3.1.2.1, which is what net-snmp's "AES-192"/"AES-256" use.

Timeliness (RFC 3414 3.2 step 7b, the non-authoritative side): per engine ID the latest
boots and time seen in an authentic message; an older boots, or a time more than 150 s
behind our running notion of the sender's clock, is refused. Inside the window an exact
replay of an authentic message is also refused (its MAC was seen in the last 150 s).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from collector.snmp.ber import FLAG_AUTH, FLAG_PRIV, UsmParams

TIME_WINDOW_S = 150  # RFC 3414 2.2.3
MAX_BOOTS = 2**31 - 1
MAX_ENGINES = 4096  # engines remembered for timeliness (only authentic messages create one)
MAX_RECENT_MACS = 65_536  # MACs remembered for replay detection

# name -> (hash, truncated MAC length); RFC 3414 6.3/7.3 and RFC 7860 4.2.
AUTH: dict[str, tuple[Callable[..., hashlib._Hash], int]] = {
    "MD5": (hashlib.md5, 12),
    "SHA": (hashlib.sha1, 12),
    "SHA-224": (hashlib.sha224, 16),
    "SHA-256": (hashlib.sha256, 24),
    "SHA-384": (hashlib.sha384, 32),
    "SHA-512": (hashlib.sha512, 48),
}
PRIV_KEY_BYTES = {"DES": 16, "AES": 16, "AES-128": 16, "AES-192": 24, "AES-256": 32}


class UsmError(Exception):
    """A message USM refuses; ``reason`` is a short word for /metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


def password_to_key(password: bytes, hash_name: str) -> bytes:
    """Ku: the hash of the password repeated to 1,048,576 octets (RFC 3414 A.2.1/A.2.2,
    RFC 7860 9.3)."""
    if not password:
        raise ValueError("empty password")
    # Exactly 1 MiB of the password repeated (the RFC's 64-octet loop, in one update).
    return AUTH[hash_name][0]((password * (1_048_576 // len(password) + 1))[:1_048_576]).digest()


def localize(ku: bytes, engine_id: bytes, hash_name: str) -> bytes:
    """Kul = H(Ku || engineID || Ku) (RFC 3414 2.6)."""
    return AUTH[hash_name][0](ku + engine_id + ku).digest()


def priv_key(ku_priv: bytes, engine_id: bytes, hash_name: str, priv: str) -> bytes:
    """The localized privacy key, extended when the hash is shorter than the cipher key
    (draft-blumenthal-aes-usm-04 3.1.2.1: append H(key so far) until long enough)."""
    key = localize(ku_priv, engine_id, hash_name)
    need = PRIV_KEY_BYTES[priv]
    while len(key) < need:
        key += AUTH[hash_name][0](key).digest()
    return key[:need]


@dataclass(frozen=True)
class UsmUser:
    """One user's protocols and master keys (Ku): derived once from the passwords."""

    name: bytes
    auth: str | None
    priv: str | None
    auth_ku: bytes | None
    priv_ku: bytes | None

    @staticmethod
    def of(
        name: str, auth: str | None, auth_password: str | None, priv: str | None, priv_password: str | None
    ) -> UsmUser:
        if auth is not None and auth not in AUTH:
            raise ValueError(f"unknown auth protocol {auth!r}")
        if priv is not None and priv not in PRIV_KEY_BYTES:
            raise ValueError(f"unknown privacy protocol {priv!r}")
        auth_ku = password_to_key(auth_password.encode(), auth) if auth and auth_password else None
        priv_ku = password_to_key(priv_password.encode(), auth) if auth and priv and priv_password else None
        return UsmUser(name.encode(), auth, priv if priv_ku else None, auth_ku, priv_ku)

    @property
    def level(self) -> int:
        """The msgFlags bits this user's messages must carry."""
        return (FLAG_AUTH if self.auth_ku else 0) | (FLAG_PRIV if self.priv_ku else 0)


def authenticate(user: UsmUser, usm: UsmParams, whole: bytes) -> None:
    """Check msgAuthenticationParameters (RFC 3414 6.3.2 / 7.3.2): the HMAC of the whole
    message with those octets zeroed, keyed with the key localized to the sender's engine."""
    assert user.auth is not None and user.auth_ku is not None
    hash_fn, mac_len = AUTH[user.auth]
    if len(usm.auth_params) != mac_len:
        raise UsmError("auth_failed", f"MAC of {len(usm.auth_params)} octets, {user.auth} uses {mac_len}")
    key = localize(user.auth_ku, usm.engine_id, user.auth)
    a = usm.auth_offset
    zeroed = whole[:a] + bytes(mac_len) + whole[a + mac_len :]
    mac = hmac.new(key, zeroed, hash_fn).digest()[:mac_len]
    if not hmac.compare_digest(mac, usm.auth_params):
        raise UsmError("auth_failed", "wrong MAC (wrong auth password or protocol, or altered message)")


def decrypt(user: UsmUser, usm: UsmParams, encrypted: bytes) -> bytes:
    """The plaintext ScopedPDU (with any padding) of an authPriv message."""
    assert user.priv is not None and user.priv_ku is not None and user.auth is not None
    key = priv_key(user.priv_ku, usm.engine_id, user.auth, user.priv)
    salt = usm.priv_params
    if len(salt) != 8:
        raise UsmError("decrypt_failed", f"msgPrivacyParameters of {len(salt)} octets, 8 expected")
    if user.priv == "DES":
        # RFC 3414 8.1.1: DES key = first 8 octets, pre-IV = next 8; IV = pre-IV XOR salt.
        if len(encrypted) % 8:
            raise UsmError("decrypt_failed", "CBC-DES data is not a multiple of 8 octets")
        iv = bytes(x ^ y for x, y in zip(key[8:16], salt, strict=True))
        # Single DES as 3DES with K1 = K2 = K3 (EDE with one key is DES).
        d = Cipher(TripleDES(key[:8] * 3), modes.CBC(iv)).decryptor()
    else:
        # RFC 3826 3.1.2.1: IV = engineBoots (4) || engineTime (4) || salt (8).
        iv = usm.engine_boots.to_bytes(4, "big") + usm.engine_time.to_bytes(4, "big") + salt
        d = Cipher(algorithms.AES(key), CFB(iv)).decryptor()
    return d.update(encrypted) + d.finalize()


@dataclass(slots=True)
class _EngineClock:
    boots: int
    time: int
    at: float  # our monotonic clock when `time` was learnt


class Timeliness:
    """The non-authoritative notion of each sender's engine clock, and recent MACs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.engines: OrderedDict[bytes, _EngineClock] = OrderedDict()
        self.recent: OrderedDict[bytes, float] = OrderedDict()

    def check(self, usm: UsmParams) -> None:
        """RFC 3414 3.2 step 7b for an authentic message; updates the notion when it is newer."""
        now = self.clock()
        known = self.engines.get(usm.engine_id)
        if known is not None:
            local_time = known.time + int(now - known.at)
            if (
                known.boots >= MAX_BOOTS
                or usm.engine_boots < known.boots
                or (usm.engine_boots == known.boots and usm.engine_time < local_time - TIME_WINDOW_S)
            ):
                raise UsmError(
                    "not_in_time_window",
                    f"boots {usm.engine_boots} time {usm.engine_time}, expected boots {known.boots} "
                    f"time >= {local_time - TIME_WINDOW_S}",
                )
        mac_key = usm.engine_id + usm.auth_params
        seen = self.recent.get(mac_key)
        if seen is not None and now - seen <= TIME_WINDOW_S:
            raise UsmError("replay", "this authentic message was already received")
        if known is None or (usm.engine_boots, usm.engine_time) > (
            known.boots,
            known.time + int(now - known.at),
        ):
            self.engines[usm.engine_id] = _EngineClock(usm.engine_boots, usm.engine_time, now)
            self.engines.move_to_end(usm.engine_id)
            while len(self.engines) > MAX_ENGINES:
                self.engines.popitem(last=False)
        self.recent[mac_key] = now
        while self.recent and (
            len(self.recent) > MAX_RECENT_MACS or now - next(iter(self.recent.values())) > TIME_WINDOW_S
        ):
            self.recent.popitem(last=False)
