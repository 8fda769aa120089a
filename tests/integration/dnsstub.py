"""dnsstub: a tiny authoritative DNS responder for tests (RFC 1035).

It answers, over UDP and TCP on one address and port, the questions about a
small zone given as JSON: {"name": {"MX": [[pref, "host"], ...], "A": ["v4"],
"AAAA": ["v6"]}}. A name in the zone without records of the asked type gets
an empty NOERROR answer (NODATA); a name not in the zone gets NXDOMAIN. MX
host "." is a null MX (RFC 7505); a name whose entry has "SERVFAIL": true
gets SERVFAIL (a server that cannot answer now). Answers over UDP that exceed 512 octets are
sent truncated (TC set, no records) so that the resolver asks again over TCP.
Every question is logged as one line "transport name type" to --log, and
"ready" is printed on stdout once both sockets are bound.

Usage: dnsstub.py --addr 127.0.0.1 --port 53 --zone zone.json --log q.log
"""
import argparse
import ipaddress
import json
import socket
import socketserver
import struct
import sys
import threading

TYPES = {"A": 1, "SOA": 6, "MX": 15, "AAAA": 28}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
CLASS_IN = 1
UDP_MAX = 512           # RFC 1035 2.3.4, without EDNS
MAX_NAME = 255          # RFC 1035 2.3.4
MAX_TCP_QUERIES = 100   # per connection
TTL = 60

RCODE_OK, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP = 0, 1, 2, 3, 4


class FormatError(Exception):
    pass


def parse_name(data, offset):
    """Reads a (possibly compressed) name; returns (name, offset after it)."""
    labels = []
    end = None
    jumps = 0
    while True:
        if offset >= len(data):
            raise FormatError("name runs past the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data) or jumps > 20:
                raise FormatError("bad compression pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            jumps += 1
            continue
        if length & 0xC0:
            raise FormatError("unknown label type")
        offset += 1
        if length == 0:
            break
        labels.append(data[offset:offset + length].decode("ascii", "replace"))
        offset += length
    name = ".".join(labels)
    if len(name) > MAX_NAME:
        raise FormatError("name too long")
    return name, (end if end is not None else offset)


def encode_name(name):
    """A name as uncompressed labels (RFC 1035 3.1); "" or "." is the root."""
    out = b""
    for label in name.strip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def rr(name, rtype, rdata):
    """One resource record (RFC 1035 4.1.3) of class IN."""
    return encode_name(name) + struct.pack("!HHIH", rtype, CLASS_IN, TTL, len(rdata)) + rdata


def records(zone, name, qtype):
    """The answer records for (name, qtype) from the zone."""
    entry = zone[name]
    out = []
    if qtype == TYPES["MX"]:
        for pref, host in entry.get("MX", []):
            out.append(rr(name, qtype, struct.pack("!H", pref) + encode_name(host)))
    elif qtype == TYPES["A"]:
        for addr in entry.get("A", []):
            out.append(rr(name, qtype, ipaddress.IPv4Address(addr).packed))
    elif qtype == TYPES["AAAA"]:
        for addr in entry.get("AAAA", []):
            out.append(rr(name, qtype, ipaddress.IPv6Address(addr).packed))
    return out


def answer(zone, query, transport, log):
    """The response message for one query message (RFC 1035 4.1), or None to drop it."""
    if len(query) < 12:
        return None
    qid, flags, qdcount, _an, _ns, _ar = struct.unpack("!HHHHHH", query[:12])
    if flags & 0x8000:
        return None  # a response, not a question
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100
    question = b""
    rcode = RCODE_OK
    answers = []
    try:
        if opcode != 0:
            rcode = RCODE_NOTIMP
        elif qdcount != 1:
            rcode = RCODE_FORMERR
        else:
            name, offset = parse_name(query, 12)
            if offset + 4 > len(query):
                raise FormatError("question runs past the message")
            qtype, qclass = struct.unpack("!HH", query[offset:offset + 4])
            question = query[12:offset + 4]
            log(f"{transport} {name.lower()} {TYPE_NAMES.get(qtype, qtype)}")
            key = name.lower().rstrip(".")
            if key not in zone:
                rcode = RCODE_NXDOMAIN
            elif zone[key].get("SERVFAIL"):
                rcode = RCODE_SERVFAIL
            elif qclass == CLASS_IN:
                answers = records(zone, key, qtype)
    except FormatError:
        rcode = RCODE_FORMERR
        question = b""
    qd = 1 if question else 0

    def message(tc, ans):
        out_flags = 0x8000 | (opcode << 11) | 0x0400 | (0x0200 if tc else 0) | rd | rcode
        return (struct.pack("!HHHHHH", qid, out_flags, qd, len(ans), 0, 0) + question
                + b"".join(ans))

    msg = message(False, answers)
    if transport == "udp" and len(msg) > UDP_MAX:
        msg = message(True, [])
    return msg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--zone", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    with open(args.zone) as f:
        zone = {k.lower().rstrip("."): v for k, v in json.load(f).items()}
    lock = threading.Lock()
    logf = open(args.log, "a", buffering=1)

    def log(line):
        with lock:
            logf.write(line + "\n")

    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            reply = answer(zone, data, "udp", log)
            if reply is not None:
                sock.sendto(reply, self.client_address)

    class Tcp(socketserver.BaseRequestHandler):
        def recv_exact(self, n):
            buf = b""
            while len(buf) < n:
                chunk = self.request.recv(n - len(buf))
                if not chunk:
                    return None
                buf += chunk
            return buf

        def handle(self):
            self.request.settimeout(10)
            try:
                for _ in range(MAX_TCP_QUERIES):
                    head = self.recv_exact(2)
                    if head is None:
                        return
                    data = self.recv_exact(struct.unpack("!H", head)[0])
                    if data is None:
                        return
                    reply = answer(zone, data, "tcp", log)
                    if reply is None:
                        return
                    self.request.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((args.addr, args.port), Udp)
    tcp = socketserver.ThreadingTCPServer((args.addr, args.port), Tcp)
    udp.daemon_threads = tcp.daemon_threads = True
    threading.Thread(target=udp.serve_forever, daemon=True).start()
    print("ready", flush=True)
    try:
        tcp.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
