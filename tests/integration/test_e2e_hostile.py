"""End to end with hostile clients: raw sockets throwing malformed input at
every server (SMTP, LMTP, POP3, IMAP): bare LF/CR, NUL, over-long lines,
huge literals, deep nesting, pipelined junk, plaintext injected before a
STARTTLS handshake, garbage instead of a handshake, half-closed and
half-open connections, clients that never read.

Each case checks the protocol's own error, that the session goes on (or is
closed on purpose), that memory stays bounded and that nothing crashed: one
stack serves the module and its logs must hold no sanitizer report.
Every loop is bounded in count and time.
"""
import os
import re
import socket
import ssl
import time

import pytest

from conftest import Stack

BOB = "bob@example.test"
ALICE = "alice@example.test"
# Under ASan, freed memory waits in a quarantine and the peak would grow with
# whatever passed through; without it the peak measures what a daemon holds.
ASAN = os.environ.get("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile") / "stack"
    d.mkdir()
    stack = Stack(d)
    stack.start("mda", "mta", "pop3d", "imapd",
                extra_env={"ASAN_OPTIONS": ASAN + ":quarantine_size_mb=0"})
    yield stack
    errors = stack.stop()
    for name in ("mta", "mda", "pop3d", "imapd"):
        text = stack.log_text(name)
        if "ERROR: AddressSanitizer" in text or "runtime error:" in text:
            errors.append(f"{name} log:\n{text[-4000:]}")
    assert not errors, "\n".join(errors)


class Raw:
    """A raw client: send bytes, read CRLF lines, with timeouts everywhere."""

    def __init__(self, stack, port_name=None, path=None, tls=False):
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(10)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", stack.port(port_name)),
                                                 timeout=10)
        if tls:
            self.sock = stack.ssl_context().wrap_socket(self.sock)
        self.stack = stack
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line; have {self.buf[:200]!r}")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"closed; have {self.buf[:200]!r}")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def until(self, prefix, limit=200):
        """Lines up to and including the first that starts with prefix."""
        lines = []
        for _ in range(limit):
            lines.append(self.line())
            if lines[-1].startswith(prefix):
                return lines
        raise AssertionError(f"no {prefix!r} in {lines}")

    def closed(self, timeout=10):
        """True when the server closes within timeout (what it sent is dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return False
            except (ConnectionResetError, ssl.SSLError, OSError):
                return True
            if not data:
                return True
        return False

    def close(self):
        self.sock.close()


def smtp_ready(stack, port_name="smtp"):
    c = Raw(stack, port_name)
    assert c.line() == "220 localhost ESMTP mailstack"
    c.send(b"EHLO client.example\r\n")
    c.until("250 ")
    return c


def imap_login(stack, user=BOB):
    c = Raw(stack, "imaps", tls=True)
    assert c.line().startswith("* OK ")
    c.send(f"L LOGIN {user} {stack.passwords[user]}\r\n".encode())
    assert c.until("L ")[-1].startswith("L OK ")
    return c


def pop_login(stack, user=BOB):
    c = Raw(stack, "pop3s", tls=True)
    assert c.line() == "+OK mailstack POP3 server ready"
    c.send(f"USER {user}\r\nPASS {stack.passwords[user]}\r\n".encode())
    assert c.line() == "+OK Send the password with PASS"
    assert c.line().startswith("+OK Logged in, ")
    return c


def hwm_kib(stack, name):
    with open(f"/proc/{stack.procs[name].pid}/status") as f:
        for row in f:
            if row.startswith("VmHWM:"):
                return int(row.split()[1])
    raise AssertionError("no VmHWM")


def alive(stack):
    for name, proc in stack.procs.items():
        assert proc.poll() is None, f"{name} exited with {proc.returncode}"


def submit(stack, subject, body_lines=1):
    c = smtp_ready(stack, "smtp")
    c.send(f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n".encode())
    assert c.line() == "250 2.1.0 Ok"
    assert c.line() == "250 2.1.5 Ok"
    assert c.line().startswith("354 ")
    line = b"x" * 76 + b"\r\n"
    c.send(f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\n".encode())
    for _ in range(0, body_lines, 4096):
        c.send(line * min(4096, body_lines))
    c.send(b".\r\n")
    reply = c.line(timeout=60)
    assert reply.startswith("250 2.0.0 Ok: queued as "), reply
    c.send(b"QUIT\r\n")
    assert c.line() == "221 2.0.0 Bye"
    c.close()


def wait_messages(stack, user, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = imap_login(stack, user)
        c.send(b"S STATUS INBOX (MESSAGES)\r\n")
        lines = c.until("S ")
        c.close()
        m = re.search(r"MESSAGES (\d+)", lines[0])
        if m and int(m.group(1)) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{user} never had {count} messages")


# ---- SMTP ----

def test_smtp_bad_bytes_and_overlong_lines_get_500_and_the_session_goes_on(hostile):
    c = smtp_ready(hostile)
    cases = [
        (b"NOOP\n", "500 5.5.2 Error: bare LF received, lines must end with CRLF"),
        (b"NO\x00OP\r\n", "500 5.5.2 Error: bare CR or NUL in command"),
        (b"NOOP\rNOOP\r\n", "500 5.5.2 Error: bare CR or NUL in command"),
        (b"A" * (1 << 20) + b"\r\n", "500 5.5.2 Error: line too long"),
        (b"\xff\xfe\r\n", "500 5.5.2 Error: command not recognized"),
        (b"NOOP\r\n", "250 2.0.0 Ok"),
    ]
    for data, reply in cases:
        c.send(data)
        assert c.line() == reply, data[:20]
    # A line of 16 MiB without any LF is skipped without being buffered.
    before = hwm_kib(hostile, "mta")
    chunk = b"B" * 65536
    for _ in range(256):
        c.send(chunk)
    c.send(b"\r\nNOOP\r\n")
    assert c.line(timeout=30) == "500 5.5.2 Error: line too long"
    assert c.line() == "250 2.0.0 Ok"
    assert hwm_kib(hostile, "mta") - before < 8 * 1024
    c.send(b"QUIT\r\n")
    assert c.line() == "221 2.0.0 Bye"
    alive(hostile)


def test_smtp_plaintext_pipelined_after_starttls_is_dropped(hostile):
    c = smtp_ready(hostile, "submission")
    c.send(b"STARTTLS\r\nMAIL FROM:<attacker@evil.example>\r\n")
    assert c.line() == "220 2.0.0 Ready to start TLS"
    assert c.buf == b""
    c.sock = hostile.ssl_context().wrap_socket(c.sock)
    c.send(b"NOOP\r\n")
    # Only our NOOP is answered: the injected MAIL never ran.
    assert c.line() == "250 2.0.0 Ok"
    c.send(b"RCPT TO:<bob@example.test>\r\n")
    assert c.line() == "503 5.5.1 Error: Need MAIL command"
    c.close()


def test_smtp_pipelined_transaction_from_a_half_closed_client(hostile):
    c = Raw(hostile, "smtp")
    c.send(b"EHLO client.example\r\nMAIL FROM:<alice@example.test>\r\n"
           b"RCPT TO:<bob@example.test>\r\nDATA\r\n"
           b"Subject: half-closed\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    lines = c.until("221 ")
    assert lines[0] == "220 localhost ESMTP mailstack"
    assert "250 2.1.0 Ok" in lines and "250 2.1.5 Ok" in lines
    assert any(line.startswith("250 2.0.0 Ok: queued as ") for line in lines), lines
    assert lines[-1] == "221 2.0.0 Bye"
    assert c.closed()


# ---- LMTP ----

def test_lmtp_bad_bytes_get_500_and_the_session_goes_on(hostile):
    c = Raw(hostile, path=hostile.path("run", "lmtp.sock"))
    assert c.line() == "220 localhost LMTP mailstack mda ready"
    c.send(b"LHLO x\n")
    assert c.line() == "500 5.5.2 Commands must end in CRLF (RFC 5321 2.3.8)"
    c.send(b"NO\x00OP\r\n")
    assert c.line() == "500 5.5.2 NUL in command"
    c.send(b"C" * (1 << 20) + b"\r\n")
    assert c.line().startswith("500 5.5.2 ")
    c.send(b"LHLO x\r\n")
    assert c.until("250 ")[-1] == "250 XLIFECYCLE"
    c.send(b"MAIL FROM:<a@b> SIZE=99999999999999999999999\r\n")
    assert c.line() == "552 5.3.4 Message too big"
    c.send(b"QUIT\r\n")
    assert c.line() == "221 2.0.0 Bye"
    alive(hostile)


# ---- POP3 ----

def test_pop3_bad_bytes_and_overlong_lines_get_err_and_the_session_goes_on(hostile):
    c = Raw(hostile, "pop3")
    assert c.line() == "+OK mailstack POP3 server ready"
    cases = [
        (b"USER a\x00b\r\n", "-ERR NUL byte in command"),
        (b"D" * (1 << 20) + b"\r\n", "-ERR Line too long"),
        (b"RETR 1\r\n", "-ERR RETR is not valid in the AUTHORIZATION state"),
        (b"\r\n", "-ERR Empty command"),
        (b"STLS x\r\n", "-ERR Too many arguments"),
    ]
    for data, reply in cases:
        c.send(data)
        assert c.line() == reply, data[:20]
    c.send(b"CAPA\r\n")
    assert c.until(".")[0] == "+OK Capability list follows"
    c.close()

    c = pop_login(hostile)
    for data, reply in [
            (b"RETR 0\r\n", "-ERR No such message"),
            (b"RETR -1\r\n", "-ERR Invalid message number: negative"),
            (b"RETR 18446744073709551617\r\n", "-ERR Invalid message number: not a number"),
            (b"TOP 1 -1\r\n", "-ERR Invalid number of lines: negative"),
            (b"LIST 1 2\r\n", "-ERR Too many arguments")]:
        c.send(data)
        assert c.line() == reply, data
    c.send(b"QUIT\r\n")
    assert c.line().startswith("+OK ")
    alive(hostile)


def test_pop3_plaintext_pipelined_after_stls_is_dropped(hostile):
    c = Raw(hostile, "pop3")
    c.line()
    c.send(b"STLS\r\nUSER bob@example.test\r\n")
    assert c.line() == "+OK Begin TLS negotiation"
    c.sock = hostile.ssl_context().wrap_socket(c.sock)
    c.send(b"PASS " + hostile.passwords[BOB].encode() + b"\r\n")
    # USER never arrived, so PASS has nothing to complete.
    assert c.line().startswith("-ERR ")
    c.close()


# ---- IMAP ----

def test_imap_bad_input_gets_bad_and_the_session_goes_on(hostile):
    c = Raw(hostile, "imap")
    assert c.line().startswith("* OK [CAPABILITY ")
    cases = [
        (b"a1 LOGIN {99999999999999999999}\r\n", "a1 BAD [TOOBIG] Literal too large"),
        (b"a2 LOGIN {-1}\r\n", "a2 BAD Error in IMAP command: Invalid literal size"),
        (b'a3 SELECT "INBOX\x00"\r\n', "a3 BAD Error in IMAP command: NUL byte in quoted string"),
        (b"E" * (1 << 20) + b"\r\n", "* BAD [TOOBIG] Command line too long"),
        (b"\r\n", "* BAD Empty command line"),
        (b"* NOOP\r\n", "* BAD Invalid tag"),
        (b"a4 NOOP\n", "a4 OK NOOP completed"),
        (b"a5 STARTTLS extra\r\n", "a5 BAD STARTTLS takes no arguments"),
        (b"a6 NOOP\r\n", "a6 OK NOOP completed"),
    ]
    for data, reply in cases:
        c.send(data)
        assert c.line() == reply, data[:20]
    c.close()

    c = imap_login(hostile)
    c.send(b"S SELECT INBOX\r\n")
    c.until("S ")
    deep = b"(" * 30000 + b"ALL" + b")" * 30000
    for data, reply in [
            (b"b1 SEARCH " + deep + b"\r\n", "b1 BAD Error in IMAP command: Lists nested too deeply"),
            (b"b2 SEARCH " + b"NOT " * 15000 + b"ALL\r\n",
             "b2 BAD Error in IMAP command: Too many arguments"),
            (b"b3 UID FETCH 0:* FLAGS\r\n", "b3 BAD Invalid sequence set"),
            (b"b4 NOOP\r\n", "b4 OK NOOP completed")]:
        c.send(data)
        assert c.until("b")[-1] == reply, data[:20]
    # A non-synchronizing literal over APPENDLIMIT cannot be skipped: NO, then BYE.
    c.send(b"b5 APPEND INBOX {60000000+}\r\nxyz\r\n")
    assert c.line() == "b5 NO [TOOBIG] Message too large"
    assert c.line() == "* BYE Literal too large"
    assert c.closed()
    alive(hostile)


def test_imap_plaintext_pipelined_after_starttls_is_dropped(hostile):
    c = Raw(hostile, "imap")
    c.line()
    c.send(b"s STARTTLS\r\nx LOGIN bob@example.test wrong\r\n")
    assert c.line() == "s OK Begin TLS negotiation now"
    c.sock = hostile.ssl_context().wrap_socket(c.sock)
    c.send(b"n NOOP\r\n")
    # x was plaintext sent before the handshake: never answered.
    assert c.line() == "n OK NOOP completed"
    c.close()


# ---- TLS ----

@pytest.mark.parametrize("port_name,hello,go_ahead", [
    ("smtp", b"EHLO x\r\nSTARTTLS\r\n", "220 2.0.0 Ready to start TLS"),
    ("imap", b"s STARTTLS\r\n", "s OK Begin TLS negotiation now"),
    ("pop3", b"STLS\r\n", "+OK Begin TLS negotiation"),
])
def test_garbage_instead_of_a_starttls_handshake_closes_only_that_connection(
        hostile, port_name, hello, go_ahead):
    c = Raw(hostile, port_name)
    c.line()
    c.send(hello)
    for _ in range(20):
        if c.line() == go_ahead:
            break
    else:
        raise AssertionError("no go-ahead")
    c.send(b"HELLO THIS IS NOT TLS\r\n" * 10)
    assert c.closed()
    alive(hostile)


@pytest.mark.parametrize("port_name", ["smtps", "imaps", "pop3s"])
def test_half_open_tls_clients_do_not_block_others(hostile, port_name):
    # Clients that connect and never finish (or never start) a handshake.
    idle = []
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", hostile.port(port_name)), timeout=10)
        if i % 2:
            s.sendall(b"\x16\x03\x01\x00\x05\x01\x00")   # a truncated ClientHello
        idle.append(s)
    try:
        with hostile.ssl_context().wrap_socket(
                socket.create_connection(("127.0.0.1", hostile.port(port_name)),
                                         timeout=10)) as s:
            greeting = s.recv(4096)
            assert greeting.startswith((b"220 ", b"* OK ", b"+OK ")), greeting
    finally:
        for s in idle:
            s.close()
    alive(hostile)


# ---- half-closed readers and clients that never read ----

def test_half_closed_readers_get_the_whole_message(hostile):
    submit(hostile, "big one", body_lines=40000)   # about 3 MiB
    wait_messages(hostile, BOB, 1)
    c = pop_login(hostile)
    c.send(b"STAT\r\n")
    n = int(c.line().split()[1])
    c.send(f"LIST {n}\r\n".encode())
    size = int(c.line().split()[2])
    c.send(f"RETR {n}\r\nQUIT\r\n".encode())
    # (SSLSocket.shutdown would drop TLS from the socket object: shut the fd.)
    socket.socket.shutdown(c.sock, socket.SHUT_WR)
    assert c.line() == f"+OK {size} octets"
    got = 0
    for _ in range(100000):
        line = c.line(timeout=30)
        if line == ".":
            break
        got += len(line) + 2
    assert got == size
    assert c.line() == "+OK Logging out, 0 messages deleted"

    c = imap_login(hostile)
    c.send(f"e EXAMINE INBOX\r\nf FETCH {n} BODY.PEEK[]\r\ng LOGOUT\r\n".encode())
    socket.socket.shutdown(c.sock, socket.SHUT_WR)
    c.until("e OK ")
    head = c.line(timeout=30)
    m = re.match(r"\* %d FETCH \(BODY\[\] \{(\d+)\}$" % n, head)
    assert m, head
    need = int(m.group(1))
    deadline = time.monotonic() + 60
    while len(c.buf) < need and time.monotonic() < deadline:
        data = c.sock.recv(1 << 20)
        if not data:
            break
        c.buf += data
    assert len(c.buf) >= need
    c.buf = c.buf[need:]
    assert c.line() == ")"
    assert c.line() == "f OK FETCH completed"
    assert c.line() == "* BYE Logging out"
    assert c.line() == "g OK LOGOUT completed"


@pytest.mark.parametrize("name,port_name,command,tls", [
    ("mta", "smtp", b"NOOP\r\n", False),
    ("pop3d", "pop3", b"CAPA\r\n", False),
    ("imapd", "imap", b"c CAPABILITY\r\n", False),
    ("imapd", "imaps", b"f FETCH 1 BODY.PEEK[]\r\n", True),
    ("pop3d", "pop3s", b"RETR 1\r\n", True),
])
def test_clients_that_never_read_keep_memory_bounded(hostile, name, port_name, command, tls):
    if tls:
        wait_messages(hostile, BOB, 1)
        c = imap_login(hostile) if name == "imapd" else pop_login(hostile)
        if name == "imapd":
            c.send(b"S EXAMINE INBOX\r\n")
            c.until("S ")
    else:
        c = Raw(hostile, port_name)
        c.line()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    before = hwm_kib(hostile, name)
    block = command * (65536 // len(command))
    sent = 0
    c.sock.settimeout(2)
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and sent < (64 << 20):
            sent += c.sock.send(block)
    except (socket.timeout, TimeoutError, ssl.SSLWantWriteError):
        pass
    except (ConnectionResetError, BrokenPipeError):
        pass    # the mta cuts a flood of NOOPs with 421: bounded too
    # The server stopped reading (or hung up): we could not push everything.
    assert sent < (64 << 20)
    grown = hwm_kib(hostile, name) - before
    assert grown < 16 * 1024, f"{name} peak memory grew by {grown} KiB"
    c.close()
    alive(hostile)
    # and it still serves others
    if name == "mta":
        smtp_ready(hostile).close()
    elif name == "imapd":
        imap_login(hostile).close()
    else:
        pop_login(hostile, ALICE).close()


# ---- the one-shot LDA ----

def lda(stack, *args, message):
    return stack.run("mda", "--dir", stack.dir, "deliver", *args, input=message)


def return_paths(stack, user, subject):
    c = imap_login(stack, user)
    c.send(b"S EXAMINE INBOX\r\n")
    c.until("S ")
    c.send(f"F SEARCH SUBJECT {subject}\r\n".encode())
    numbers = c.until("F ")[0].split()[2:]
    paths = []
    for n in numbers:
        c.send(f"G FETCH {n} BODY.PEEK[HEADER]\r\n".encode())
        head = c.line()
        size = int(re.search(r"\{(\d+)\}$", head).group(1))
        deadline = time.monotonic() + 10
        while len(c.buf) < size and time.monotonic() < deadline:
            c.buf += c.sock.recv(65536)
        header, c.buf = c.buf[:size].decode("latin-1"), c.buf[size:]
        c.until("G ")
        assert "X-Injected" not in header, header
        assert "\n" not in header.replace("\r\n", ""), "bare LF in the stored header"
        paths.append(header.split("\r\n", 1)[0])
    c.close()
    return paths


def test_lda_sender_cannot_inject_header_fields(hostile):
    subject = "lda-sender-check"
    message = f"Subject: {subject}\n\nhi\n"
    r = lda(hostile, "-f", "a b@c>\nX-Injected: yes", ALICE, message=message)
    assert r.returncode == 75
    assert r.stderr.endswith(": not a valid sender address\n"), r.stderr
    r = lda(hostile, "-f", "<bad", ALICE, message=message)
    assert r.returncode == 75
    assert return_paths(hostile, ALICE, subject) == []

    for i, (sender, path) in enumerate((("root", "<root>"), ("MAILER-DAEMON", "<>"),
                                        ("<>", "<>"),
                                        ("<carol@example.test>", "<carol@example.test>"))):
        r = lda(hostile, "-f", sender, ALICE, message=f"Subject: {subject}-n{i}x\n\nhi\n")
        assert r.returncode == 0, r.stderr
        assert return_paths(hostile, ALICE, f"{subject}-n{i}x") == [
            f"Return-Path: {path}"]

    # An mbox From_ line in CRLF gives its address without the CR; one that
    # holds no address gives no sender.
    r = lda(hostile, ALICE, message=f"From dave@example.test\r\nSubject: {subject}-windows\r\n\r\nhi\r\n")
    assert r.returncode == 0, r.stderr
    assert return_paths(hostile, ALICE, f"{subject}-windows") == ["Return-Path: <dave@example.test>"]
    r = lda(hostile, ALICE, message=f"From x\ry Mon Jan  1 00:00:00 2024\nSubject: {subject}-rawcr\n\nhi\n")
    assert r.returncode == 0, r.stderr
    assert return_paths(hostile, ALICE, f"{subject}-rawcr") == ["Return-Path: <>"]



def test_a_tls_handshake_that_never_comes_is_cut_after_30_seconds(hostile):
    # The idle timeouts are minutes long (imap 1800 s); a client that never
    # speaks TLS must not hold a slot of its address's connection limit that long.
    socks = {}
    for port_name in ("imaps", "pop3s", "smtps", "imap"):
        socks[port_name] = socket.create_connection(("127.0.0.1", hostile.port(port_name)),
                                                    timeout=10)
    c = socks["imap"]
    assert c.recv(4096).startswith(b"* OK ")
    c.sendall(b"s STARTTLS\r\n")
    assert c.recv(4096) == b"s OK Begin TLS negotiation now\r\n"
    start = time.monotonic()
    cut = {}
    try:
        for _ in range(100):
            left = [s for name, s in socks.items() if name not in cut]
            if not left or time.monotonic() - start > 45:
                break
            for name, s in socks.items():
                if name in cut:
                    continue
                s.settimeout(0.5)
                try:
                    data = s.recv(4096)
                except (socket.timeout, TimeoutError):
                    continue
                except ConnectionResetError:
                    data = b""
                assert data == b"", (name, data)
                cut[name] = time.monotonic() - start
    finally:
        for s in socks.values():
            s.close()
    assert sorted(cut) == sorted(socks), cut
    for name, took in cut.items():
        assert 25 < took < 40, (name, took)
    alive(hostile)
