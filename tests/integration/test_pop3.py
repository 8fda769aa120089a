"""pop3d against poplib, raw sockets, curl and fetchmail (issue 5).

Messages are put in the mailbox by the real delivery agent (`mda deliver`),
and every reply is checked to the letter.
"""
import os
import poplib
import re
import socket
import ssl
import subprocess
import time

import pytest

from scram import ScramClient, plain

BOB = "bob@example.test"


def deliver(stack, rcpt, message):
    if isinstance(message, str):
        message = message.encode()
    r = subprocess.run([os.path.join(stack.bin, "mda"), "deliver", "--dir", stack.dir,
                        "-f", "sender@example.org", rcpt], input=message,
                       capture_output=True, timeout=60, env=stack.env())
    assert r.returncode == 0, r.stderr.decode(errors="replace")


def make_message(n, body="Hello.\r\n", extra=""):
    return (f"From: Sender <sender@example.org>\r\nTo: {BOB}\r\n"
            f"Subject: message {n}\r\nMessage-ID: <m{n}.{time.time_ns()}@example.org>\r\n"
            f"{extra}\r\n{body}")


class Raw:
    """A line-level POP3 client: every reply read as the exact line."""

    def __init__(self, port, ctx=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        if ctx is not None:
            self.sock = ctx.wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")

    def line(self):
        data = self.file.readline(100000)
        if not data:
            raise EOFError("connection closed")
        assert data.endswith(b"\r\n"), data
        return data[:-2].decode("utf-8", "replace")

    def send(self, text):
        if isinstance(text, str):
            text = text.encode()
        self.sock.sendall(text)

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def multiline(self):
        lines = []
        while True:
            line = self.line()
            if line == ".":
                return lines
            lines.append(line[1:] if line.startswith("..") else line)

    def starttls(self, ctx):
        self.file.close()
        self.sock = ctx.wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def pop(stack):
    stack.start("pop3d")
    return stack


def login(stack, user=BOB, tls=True):
    r = Raw(stack.port("pop3s"), stack.ssl_context())
    assert r.line().startswith("+OK")
    assert r.cmd(f"USER {user}") == "+OK Send the password with PASS"
    reply = r.cmd(f"PASS {stack.passwords[user]}")
    assert reply.startswith("+OK Logged in, "), reply
    return r


def test_capa_and_auth_refused_before_tls(pop):
    r = Raw(pop.port("pop3"))
    assert r.line() == "+OK mailstack POP3 server ready"
    assert r.cmd("CAPA") == "+OK Capability list follows"
    caps = r.multiline()
    assert caps == ["STLS", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
                    "EXPIRE NEVER", "LOGIN-DELAY 0"]
    refusal = "-ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)"
    assert r.cmd("USER bob@example.test") == refusal
    assert r.cmd("PASS secret") == refusal
    assert r.cmd("AUTH PLAIN " + plain(BOB, "x")) == refusal
    assert r.cmd("QUIT") == "+OK Bye"


def test_stls_then_login(pop):
    r = Raw(pop.port("pop3"))
    r.line()
    assert r.cmd("STLS") == "+OK Begin TLS negotiation"
    r.starttls(pop.ssl_context())
    assert r.cmd("CAPA") == "+OK Capability list follows"
    caps = r.multiline()
    assert "USER" in caps and "SASL PLAIN LOGIN SCRAM-SHA-256" in caps
    assert "STLS" not in caps
    assert r.cmd("STLS") == "-ERR Already using TLS"
    assert r.cmd(f"USER {BOB}") == "+OK Send the password with PASS"
    assert r.cmd(f"PASS {pop.passwords[BOB]}") == "+OK Logged in, 0 messages (0 octets)"
    assert r.cmd("CAPA") == "+OK Capability list follows"
    assert "IMPLEMENTATION mailstack" in r.multiline()
    assert r.cmd("QUIT") == "+OK Logging out, 0 messages deleted"


def test_stls_again_is_refused(pop):
    r = Raw(pop.port("pop3"))
    r.line()
    assert r.cmd("STLS") == "+OK Begin TLS negotiation"
    r.starttls(pop.ssl_context())
    assert r.cmd("STLS") == "-ERR Already using TLS"


def test_stls_discards_pipelined_plaintext(pop):
    """Commands sent after STLS in the same packet are never executed (CVE-2011-0411)."""
    r = Raw(pop.port("pop3"))
    r.line()
    r.send(f"STLS\r\nUSER {BOB}\r\n")
    assert r.line() == "+OK Begin TLS negotiation"
    r.starttls(pop.ssl_context())
    # Had the USER been kept, PASS would now log in.
    assert r.cmd(f"PASS {pop.passwords[BOB]}") == "-ERR Send USER first"


def test_implicit_tls_with_poplib(pop):
    deliver(pop, BOB, make_message(1))
    p = poplib.POP3_SSL("127.0.0.1", pop.port("pop3s"), context=pop.ssl_context(), timeout=15)
    p.user(BOB)
    p.pass_(pop.passwords[BOB])
    count, octets = p.stat()
    assert count == 1 and octets > 0
    resp, lines, size = p.retr(1)
    assert resp.startswith(b"+OK")
    assert b"Subject: message 1" in lines
    assert p.quit() == b"+OK Logging out, 0 messages deleted"


def test_transaction_commands(pop):
    bodies = ["one\r\n", ".starts with a dot\r\n..two dots\r\nend\r\n", "three\r\nx\r\ny\r\n"]
    msgs = [make_message(i + 1, body) for i, body in enumerate(bodies)]
    for m in msgs:
        deliver(pop, BOB, m)
    r = login(pop)
    stat = r.cmd("STAT")
    m = re.fullmatch(r"\+OK 3 (\d+)", stat)
    assert m, stat
    total = int(m.group(1))
    assert r.cmd("LIST") == f"+OK 3 messages ({total} octets)"
    listing = r.multiline()
    sizes = [int(line.split()[1]) for line in listing]
    assert [line.split()[0] for line in listing] == ["1", "2", "3"]
    assert sum(sizes) == total
    assert r.cmd("LIST 2") == f"+OK 2 {sizes[1]}"
    assert r.cmd("UIDL") == "+OK Unique-ID listing follows"
    uidls = dict(line.split() for line in r.multiline())
    assert len(set(uidls.values())) == 3
    assert all(re.fullmatch(r"[0-9a-f]{16}", u) for u in uidls.values())
    assert r.cmd("UIDL 3") == f"+OK 3 {uidls['3']}"

    # RETR: the exact octets, dot-stuffed on the wire and unstuffed here.
    assert r.cmd("RETR 2") == f"+OK {sizes[1]} octets"
    got = "\r\n".join(r.multiline()) + "\r\n"
    assert got.endswith(bodies[1])
    assert len(got.encode()) == sizes[1]

    # TOP n 0 is the header and the blank line; TOP n 1 adds one body line.
    assert r.cmd("TOP 3 0") == "+OK Top of message follows"
    top = r.multiline()
    assert top[-1] == "" and "Subject: message 3" in top
    assert r.cmd("TOP 3 1") == "+OK Top of message follows"
    assert r.multiline()[-2:] == ["", "three"]

    assert r.cmd("DELE 1") == "+OK Message 1 deleted"
    assert r.cmd("DELE 1") == "-ERR Message 1 is deleted"
    assert r.cmd("RETR 1") == "-ERR Message 1 is deleted"
    assert r.cmd("LIST 1") == "-ERR Message 1 is deleted"
    assert r.cmd("STAT") == f"+OK 2 {total - sizes[0]}"
    assert r.cmd("LIST") == f"+OK 2 messages ({total - sizes[0]} octets)"
    assert [line.split()[0] for line in r.multiline()] == ["2", "3"]
    assert r.cmd("RSET") == f"+OK Maildrop has 3 messages ({total} octets)"
    assert r.cmd("NOOP") == "+OK"
    assert r.cmd("DELE 2") == "+OK Message 2 deleted"
    assert r.cmd("QUIT") == "+OK Logging out, 1 messages deleted"
    r.close()

    r = login(pop)
    assert r.cmd("STAT") == f"+OK 2 {total - sizes[1]}"
    assert r.cmd("UIDL") == "+OK Unique-ID listing follows"
    # The same messages keep the same UIDL, under new message numbers.
    assert r.multiline() == [f"1 {uidls['1']}", f"2 {uidls['3']}"]


def test_bad_input_each_gets_an_error_and_the_session_goes_on(pop):
    deliver(pop, BOB, make_message(1))
    r = Raw(pop.port("pop3s"), pop.ssl_context())
    r.line()
    assert r.cmd("STAT") == "-ERR STAT is not valid in the AUTHORIZATION state"
    assert r.cmd("RETR 1") == "-ERR RETR is not valid in the AUTHORIZATION state"
    assert r.cmd("PASS nothing") == "-ERR Send USER first"
    assert r.cmd("USER") == "-ERR Missing user name"
    assert r.cmd("FROB") == "-ERR Unknown command"
    assert r.cmd("") == "-ERR Empty command"
    assert r.cmd("NO\0OP") == "-ERR NUL byte in command"
    assert r.cmd("X" * 400) == "-ERR Line too long"
    assert r.cmd("AUTH FOO") == "-ERR Unsupported authentication mechanism"
    assert r.cmd(f"USER {BOB}") == "+OK Send the password with PASS"
    assert re.fullmatch(r"\+OK Logged in, 1 messages \(\d+ octets\)",
                        r.cmd(f"PASS {pop.passwords[BOB]}"))
    assert r.cmd("USER bob") == "-ERR USER is not valid in the TRANSACTION state"
    assert r.cmd("STLS") == "-ERR STLS is not valid in the TRANSACTION state"
    assert r.cmd("RETR") == "-ERR Missing message number"
    assert r.cmd("RETR abc") == "-ERR Invalid message number: not a number"
    assert r.cmd("RETR -1") == "-ERR Invalid message number: negative"
    assert r.cmd("RETR 0") == "-ERR No such message"
    assert r.cmd("RETR 2") == "-ERR No such message"
    assert r.cmd("RETR 99999999999") == "-ERR Invalid message number: not a number"
    assert r.cmd("DELE x") == "-ERR Invalid message number: not a number"
    assert r.cmd("LIST 1 2") == "-ERR Too many arguments"
    assert r.cmd("STAT now") == "-ERR Too many arguments"
    assert r.cmd("QUIT now") == "-ERR Too many arguments"
    assert r.cmd("TOP 1") == "-ERR Missing number of lines"
    assert r.cmd("TOP 1 -2") == "-ERR Invalid number of lines: negative"
    assert r.cmd("TOP 1 many") == "-ERR Invalid number of lines: not a number"
    assert r.cmd("UIDL 5") == "-ERR No such message"
    assert r.cmd("Y" * 1000) == "-ERR Line too long"
    assert r.cmd("NOOP") == "+OK"
    assert r.cmd("stat").startswith("+OK 1 ")


def test_failed_logins_are_delayed_then_disconnected(stack_factory):
    s = stack_factory(config_extra="[server]\nmax_auth_failures = 3")
    s.start("pop3d")
    r = Raw(s.port("pop3s"), s.ssl_context())
    r.line()
    started = time.monotonic()
    for _ in range(2):
        assert r.cmd(f"USER {BOB}") == "+OK Send the password with PASS"
        assert r.cmd("PASS wrong") == "-ERR [AUTH] Authentication failed"
    assert r.cmd(f"USER {BOB}") == "+OK Send the password with PASS"
    assert r.cmd("PASS wrong") == "-ERR [AUTH] Authentication failed"
    assert r.line() == "-ERR [AUTH] Too many authentication failures, closing"
    with pytest.raises(EOFError):
        r.line()
    # The second and third failures were answered only after a delay.
    assert time.monotonic() - started >= 0.5


def test_sasl_mechanisms(pop):
    pw = pop.passwords[BOB]
    # PLAIN with an initial response.
    r = Raw(pop.port("pop3s"), pop.ssl_context())
    r.line()
    assert r.cmd("AUTH PLAIN " + plain(BOB, pw)).startswith("+OK Logged in")
    r.close()
    # PLAIN without: an empty challenge first.
    r = Raw(pop.port("pop3s"), pop.ssl_context())
    r.line()
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd(plain(BOB, pw)).startswith("+OK Logged in")
    r.close()
    # LOGIN.
    r = Raw(pop.port("pop3s"), pop.ssl_context())
    r.line()
    assert r.cmd("AUTH LOGIN") == "+ VXNlcm5hbWU6"
    import base64
    assert r.cmd(base64.b64encode(BOB.encode()).decode()) == "+ UGFzc3dvcmQ6"
    assert r.cmd(base64.b64encode(pw.encode()).decode()).startswith("+OK Logged in")
    r.close()
    # SCRAM-SHA-256 with and without an initial response.
    for initial in (True, False):
        r = Raw(pop.port("pop3s"), pop.ssl_context())
        r.line()
        client = ScramClient(BOB, pw)
        if initial:
            challenge = r.cmd("AUTH SCRAM-SHA-256 " + client.first())
        else:
            assert r.cmd("AUTH SCRAM-SHA-256") == "+ "
            challenge = r.cmd(client.first())
        assert challenge.startswith("+ ")
        final = r.cmd(client.final(challenge[2:]))
        assert final.startswith("+ "), final
        assert client.verify(final[2:])
        assert r.cmd("").startswith("+OK Logged in")
        r.close()
    # Wrong password, abort, bad base64.
    r = Raw(pop.port("pop3s"), pop.ssl_context())
    r.line()
    assert r.cmd("AUTH PLAIN " + plain(BOB, "wrong")) == "-ERR [AUTH] Authentication failed"
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd("*") == "-ERR Authentication aborted"
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd("!!!notbase64") == "-ERR [AUTH] Invalid SASL response"
    client = ScramClient(BOB, "wrong")
    challenge = r.cmd("AUTH SCRAM-SHA-256 " + client.first())
    assert r.cmd(client.final(challenge[2:])) == "-ERR [AUTH] Authentication failed"
    assert r.cmd("QUIT") == "+OK Bye"


def test_pipelined_commands_are_answered_in_order(pop):
    for i in range(3):
        deliver(pop, BOB, make_message(i + 1))
    r = Raw(pop.port("pop3s"), pop.ssl_context())
    r.line()
    r.send(f"USER {BOB}\r\nPASS {pop.passwords[BOB]}\r\nSTAT\r\nLIST\r\nRETR 1\r\n"
           "DELE 2\r\nUIDL 2\r\nTOP 3 0\r\nNOOP\r\nQUIT\r\n")
    assert r.line() == "+OK Send the password with PASS"
    assert r.line().startswith("+OK Logged in, 3 messages")
    assert r.line().startswith("+OK 3 ")
    assert r.line().startswith("+OK 3 messages")
    assert len(r.multiline()) == 3
    assert r.line().endswith(" octets")
    assert "Subject: message 1" in r.multiline()
    assert r.line() == "+OK Message 2 deleted"
    assert r.line() == "-ERR Message 2 is deleted"
    assert r.line() == "+OK Top of message follows"
    assert "Subject: message 3" in r.multiline()
    assert r.line() == "+OK"
    assert r.line() == "+OK Logging out, 1 messages deleted"


def test_second_session_gets_in_use(pop):
    first = login(pop)
    r = Raw(pop.port("pop3s"), pop.ssl_context())
    r.line()
    r.cmd(f"USER {BOB}")
    assert r.cmd(f"PASS {pop.passwords[BOB]}") == \
        "-ERR [IN-USE] Mailbox is locked by another POP3 session"
    assert first.cmd("QUIT").startswith("+OK Logging out")
    first.close()
    r.cmd(f"USER {BOB}")
    assert r.cmd(f"PASS {pop.passwords[BOB]}").startswith("+OK Logged in")


def test_maildrop_is_a_snapshot_and_a_dropped_connection_removes_nothing(pop):
    deliver(pop, BOB, make_message(1))
    r = login(pop)
    assert r.cmd("STAT").startswith("+OK 1 ")
    deliver(pop, BOB, make_message(2))
    assert r.cmd("STAT").startswith("+OK 1 ")
    assert r.cmd("RETR 2") == "-ERR No such message"
    assert r.cmd("DELE 1") == "+OK Message 1 deleted"
    r.close()  # dropped without QUIT
    time.sleep(0.2)
    r = login(pop)
    assert r.cmd("STAT").startswith("+OK 2 ")


def test_idle_timeout(stack_factory):
    s = stack_factory(config_extra="[pop3]\nidle_timeout = 1")
    s.start("pop3d")
    r = Raw(s.port("pop3s"), s.ssl_context())
    r.line()
    assert r.line() == "-ERR Disconnected for inactivity"
    with pytest.raises(EOFError):
        r.line()


def test_large_message_streams_with_bounded_memory(stack):
    # Under AddressSanitizer freed memory sits in a quarantine and the peak
    # would grow with the bytes that passed through, whoever held them; with
    # no quarantine the peak measures what pop3d keeps at once.
    asan = os.environ.get("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1")
    pop = stack
    pop.start("pop3d", extra_env={"ASAN_OPTIONS": asan + ":quarantine_size_mb=0"})
    line = ("0123456789" * 9) + "\r\n"   # 92 octets
    body = line * (24 * 1024 * 1024 // len(line))
    deliver(pop, BOB, make_message(1, body))
    pid = pop.procs["pop3d"].pid

    def hwm_kib():
        with open(f"/proc/{pid}/status") as f:
            for row in f:
                if row.startswith("VmHWM:"):
                    return int(row.split()[1])
        raise AssertionError("no VmHWM")

    r = login(pop)
    before = hwm_kib()
    size = int(r.cmd("RETR 1").split()[1])
    received = 0
    while True:
        data = r.file.readline(200000)
        if data == b".\r\n":
            break
        received += len(data)
    assert received == size
    grown = hwm_kib() - before
    # 24 MiB went through; the daemon's peak grew by far less than that.
    assert grown < 8 * 1024, f"pop3d peak memory grew by {grown} KiB"


def curl(stack, *args):
    return subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert",
                           stack.path("tls", "cert.pem"), "-u",
                           f"{BOB}:{stack.passwords[BOB]}", *args],
                          capture_output=True, text=True, timeout=60)


def test_curl_list_retrieve_delete(pop):
    for i in range(2):
        deliver(pop, BOB, make_message(i + 1))
    base = f"pop3://localhost:{pop.port('pop3')}/"
    r = curl(pop, "--ssl-reqd", base)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.strip().splitlines()
    assert [row.split()[0] for row in rows] == ["1", "2"]
    r = curl(pop, f"pop3s://localhost:{pop.port('pop3s')}/2")
    assert r.returncode == 0, r.stderr
    assert "Subject: message 2" in r.stdout
    r = curl(pop, "--ssl-reqd", "-X", "DELE", "-I", base + "1")
    assert r.returncode == 0, r.stderr
    r = curl(pop, "--ssl-reqd", base)
    assert [row.split()[0] for row in r.stdout.strip().splitlines()] == ["1"]


@pytest.mark.parametrize("keep", [True, False])
def test_fetchmail(pop, tmp_path, keep):
    for i in range(3):
        deliver(pop, BOB, make_message(i + 1))
    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll localhost protocol pop3 port {pop.port('pop3')}\n"
        f"  user '{BOB}' there with password '{pop.passwords[BOB]}' is 'root' here\n"
        f"  sslproto tls1.2+ sslcertck sslcertfile '{pop.path('tls', 'cert.pem')}'\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
        f"  {'keep' if keep else 'nokeep'} fetchall\n")
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-v"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    text = out.read_text()
    for i in range(3):
        assert f"Subject: message {i + 1}" in text
    r = login(pop)
    remaining = 3 if keep else 0
    assert r.cmd("STAT").startswith(f"+OK {remaining} ")
