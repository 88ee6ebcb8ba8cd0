"""Does the broker speak MQTT 5? Mosquitto does; the embedded amqtt broker speaks only 3.1.1.

A bare MQTT 5 CONNECT tells them apart without guessing: a 3.1.1-only broker answers with the
3.1.1 CONNACK "unacceptable protocol version" (``20 02 00 01``), an MQTT 5 broker with an MQTT 5
CONNACK (even one refusing our credentials). The probe sends no credentials and a clean start, so
it leaves no session behind.
"""

from __future__ import annotations

import contextlib
import socket
import uuid

V311_REFUSAL = b"\x20\x02\x00\x01"


def _connect_packet(client_id: str) -> bytes:
    ident = client_id.encode()
    variable = b"\x00\x04MQTT" + b"\x05" + b"\x02" + b"\x00\x0a" + b"\x00"
    payload = len(ident).to_bytes(2, "big") + ident
    body = variable + payload
    assert len(body) < 128  # one-byte remaining length
    return b"\x10" + bytes([len(body)]) + body


def speaks_v5(host: str, port: int, timeout: float = 3.0) -> bool:
    """True unless the broker answered an MQTT 5 CONNECT with a 3.1.1 protocol refusal.
    Raises ``OSError`` when the broker cannot be reached (the caller retries)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_connect_packet(f"smokehouse-probe-{uuid.uuid4().hex[:12]}"))
        answer = b""
        try:
            while len(answer) < 4:
                chunk = sock.recv(4 - len(answer))
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        if answer[:2] == b"\x20\x02" or answer == V311_REFUSAL:
            return False  # a 3.1.1 CONNACK: only 3.1.1 spoken here
        if not answer:
            # Closed without a word: old brokers do this to protocol levels they do not know.
            return False
        with contextlib.suppress(OSError):
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        return True
