"""The mta's SMTP server (issue 3): the protocol, TLS, AUTH, submission rules,
relay control, limits and every bad input, with exact reply codes, and the
session going on after each refusal.

Also holds the helpers the other test_mta_*.py files import: a raw line
client, a stack with the mta's test settings, and reading mailboxes back.
"""
import base64
import os
import socket
import sqlite3
import ssl
import smtplib
import subprocess
import time

import pytest

from scram import ScramClient

DOMAIN = "example.test"
ALICE = "alice@example.test"
BOB = "bob@example.test"


# ---- helpers shared by the test_mta_*.py files ----

def mta_config(extra=""):
    """Config for mta tests; as root the daemons keep root so that sockets
    made before dropping privileges stay reachable."""
    text = extra
    if os.geteuid() == 0:
        text = "[server]\nrun_as = root\n" + text
    return text


def make_stack(stack_factory, extra="", **kwargs):
    return stack_factory(config_extra=mta_config(extra), **kwargs)


def mailbox(stack, address):
    """Every message body (bytes) in the user's mailbox, in UID order."""
    local, domain = address.split("@")
    path = stack.path("mail", domain, f"{local}.sqlite")
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT b.data, m.lifecycle_id FROM messages m JOIN bodies b ON b.id = m.body_id"
            " ORDER BY m.folder_id, m.uid").fetchall()
    finally:
        db.close()
    return [(bytes(r[0]), r[1]) for r in rows]


def wait_mailbox(stack, address, count, timeout=20.0):
    deadline = time.monotonic() + timeout
    msgs = []
    while time.monotonic() < deadline:
        msgs = mailbox(stack, address)
        if len(msgs) >= count:
            return msgs
        time.sleep(0.1)
    raise AssertionError(f"{address} has {len(msgs)} messages, expected {count}")


class Raw:
    """A line-level SMTP client for exact transcripts and bad input."""

    def __init__(self, port, tls_context=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls_context is not None:
            self.sock = tls_context.wrap_socket(self.sock)
        self.buf = b""

    def starttls(self, ctx):
        self.sock = ctx.wrap_socket(self.sock)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode()

    def reply(self):
        """(code, [texts]) of one possibly multi-line reply."""
        lines = []
        while True:
            line = self.line()
            lines.append(line[4:])
            if len(line) < 4 or line[3] == " ":
                return int(line[:3]), lines

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self):
        self.sock.close()


def greeted(stack, port_name="smtp", ehlo="client.test"):
    r = Raw(stack.port(port_name))
    code, _ = r.reply()
    assert code == 220
    code, _ = r.cmd(f"EHLO {ehlo}")
    assert code == 250
    return r


def assert_reply(reply, code, enhanced=None):
    got_code, texts = reply
    assert got_code == code, reply
    if enhanced is not None:
        assert texts[-1].startswith(enhanced + " "), reply


def submission_client(stack, user=ALICE):
    s = smtplib.SMTP("127.0.0.1", stack.port("submission"), timeout=15)
    s.starttls(context=stack.ssl_context())
    s.login(user, stack.passwords[user])
    return s


# ---- fixtures ----

@pytest.fixture
def mta(stack_factory):
    s = make_stack(stack_factory)
    s.start("mta", "mda")
    return s


# ---- the protocol ----

def test_greeting_and_ehlo_keywords(mta):
    r = Raw(mta.port("smtp"))
    code, texts = r.reply()
    assert code == 220 and "ESMTP" in texts[0]
    code, texts = r.cmd("EHLO client.test")
    assert code == 250
    for kw in ("PIPELINING", "SIZE 26214400", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
               "STARTTLS", "CHUNKING", "DSN"):
        assert kw in texts, kw
    assert not any(t.startswith("AUTH") for t in texts), "no AUTH before TLS"
    assert_reply(r.cmd("STARTTLS"), 220, "2.0.0")
    r.starttls(mta.ssl_context())
    code, texts = r.cmd("EHLO client.test")
    assert code == 250
    assert "AUTH PLAIN LOGIN SCRAM-SHA-256" in texts
    assert "STARTTLS" not in texts
    assert_reply(r.cmd("QUIT"), 221, "2.0.0")


def test_simple_commands(mta):
    r = greeted(mta)
    assert_reply(r.cmd("NOOP"), 250, "2.0.0")
    assert_reply(r.cmd("VRFY bob@example.test"), 252, "2.5.2")
    assert_reply(r.cmd("VRFY nobody@example.test"), 252, "2.5.2")
    assert_reply(r.cmd("HELP"), 214, "2.0.0")
    assert_reply(r.cmd("RSET"), 250, "2.0.0")
    assert_reply(r.cmd("EXPN staff"), 502, "5.5.1")
    assert_reply(r.cmd("FROB"), 500, "5.5.2")
    assert_reply(r.cmd("RSET now"), 501, "5.5.4")
    assert_reply(r.cmd("EHLO"), 501, "5.5.4")
    assert_reply(r.cmd("HELO client.test"), 250)
    assert_reply(r.cmd("QUIT"), 221, "2.0.0")
    assert r.closed()


def test_out_of_order_commands(mta):
    r = Raw(mta.port("smtp"))
    r.reply()
    assert_reply(r.cmd("MAIL FROM:<x@remote.test>"), 503, "5.5.1")
    assert_reply(r.cmd("EHLO client.test"), 250)
    assert_reply(r.cmd("RCPT TO:<bob@example.test>"), 503, "5.5.1")
    assert_reply(r.cmd("DATA"), 503, "5.5.1")
    assert_reply(r.cmd("MAIL FROM:<x@remote.test>"), 250, "2.1.0")
    assert_reply(r.cmd("MAIL FROM:<x@remote.test>"), 503, "5.5.1")
    assert_reply(r.cmd("DATA"), 554, "5.5.1")
    assert_reply(r.cmd("NOOP"), 250, "2.0.0")


def test_plain_smtp_delivery_with_lifecycle_id(mta):
    s = smtplib.SMTP("127.0.0.1", mta.port("smtp"), timeout=15)
    s.ehlo("client.test")
    s.mail("someone@remote.test")
    s.rcpt(BOB)
    code, text = s.data(b"Subject: plain\r\nMessage-ID: <plain-1@remote.test>\r\n\r\nhi\r\n")
    assert code == 250
    text = text.decode()
    assert text.startswith("2.0.0 Ok: queued as ")
    qid = text.split()[-1]
    s.quit()
    msgs = wait_mailbox(mta, BOB, 1)
    body, lifecycle = msgs[0]
    assert lifecycle == qid
    assert f"id {qid}".encode() in body
    assert b"with ESMTP id" in body
    # port 25 does not add Message-ID or Date
    assert body.count(b"Message-ID:") == 1


def test_submission_starttls_auth_plain(mta):
    s = smtplib.SMTP("127.0.0.1", mta.port("submission"), timeout=15)
    s.ehlo("client.test")
    code, _ = s.docmd("MAIL FROM:<alice@example.test>")
    assert code == 530
    s.starttls(context=mta.ssl_context())
    s.ehlo("client.test")
    s.login(ALICE, mta.passwords[ALICE])
    refused = s.sendmail(ALICE, [BOB], b"Subject: sub\r\n\r\nno id, no date\r\n")
    assert refused == {}
    s.quit()
    body, qid = wait_mailbox(mta, BOB, 1)[0]
    assert f"Message-ID: <{qid}@".encode() in body
    assert b"\r\nDate: " in body
    assert b"with ESMTPSA id" in body
    assert b"authenticated as alice@example.test" in body
    assert b"using TLSv1." in body


def test_submission_rules(mta):
    r = greeted(mta, "submission")
    assert_reply(r.cmd("MAIL FROM:<alice@example.test>"), 530, "5.7.0")
    assert_reply(r.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0x").decode()),
                 538, "5.7.11")
    assert_reply(r.cmd("STARTTLS"), 220)
    r.starttls(mta.ssl_context())
    r.cmd("EHLO client.test")
    assert_reply(r.cmd("AUTH FOO"), 504, "5.5.4")
    cred = base64.b64encode(f"\0{ALICE}\0{mta.passwords[ALICE]}".encode()).decode()
    assert_reply(r.cmd("AUTH PLAIN " + cred), 235, "2.7.0")
    assert_reply(r.cmd("AUTH PLAIN " + cred), 503, "5.5.1")
    assert_reply(r.cmd("MAIL FROM:<bob@example.test>"), 553, "5.7.1")
    assert_reply(r.cmd("MAIL FROM:<alice@example.test>"), 250, "2.1.0")
    # authenticated submission may relay
    assert_reply(r.cmd("RCPT TO:<friend@remote.test>"), 250, "2.1.5")
    assert_reply(r.cmd("RCPT TO:<nobody@example.test>"), 550, "5.1.1")
    assert_reply(r.cmd("RSET"), 250)


def test_auth_login_and_failures(stack_factory):
    s = make_stack(stack_factory, "[server]\nmax_auth_failures = 2\n")
    s.start("mta")
    r = greeted(s, "submission")
    r.cmd("STARTTLS")
    r.starttls(s.ssl_context())
    r.cmd("EHLO client.test")
    assert r.cmd("AUTH LOGIN")[0] == 334
    assert r.cmd(base64.b64encode(ALICE.encode()).decode())[0] == 334
    assert_reply(r.cmd(base64.b64encode(b"wrong").decode()), 535, "5.7.8")
    assert_reply(r.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0bad").decode()),
                 535, "5.7.8")
    assert_reply(r.reply(), 421, "4.7.0")
    assert r.closed()
    # a fresh connection can still log in
    c = smtplib.SMTP("127.0.0.1", s.port("submission"), timeout=15)
    c.starttls(context=s.ssl_context())
    c.login(ALICE, s.passwords[ALICE])
    c.quit()


def test_auth_aborted_and_malformed(mta):
    r = greeted(mta, "submission")
    r.cmd("STARTTLS")
    r.starttls(mta.ssl_context())
    r.cmd("EHLO client.test")
    assert r.cmd("AUTH PLAIN")[0] == 334
    assert_reply(r.cmd("*"), 501, "5.0.0")
    assert_reply(r.cmd("AUTH PLAIN !!!notbase64"), 501, "5.5.2")
    assert_reply(r.cmd("NOOP"), 250)


def test_auth_scram_sha256(mta):
    r = greeted(mta, "submission")
    r.cmd("STARTTLS")
    r.starttls(mta.ssl_context())
    r.cmd("EHLO client.test")
    client = ScramClient(ALICE, mta.passwords[ALICE])
    code, texts = r.cmd("AUTH SCRAM-SHA-256 " + client.first())
    assert code == 334
    code, texts = r.cmd(client.final(texts[0]))
    assert code == 334  # server-final rides in a 334 (RFC 4954 4)
    client.verify(texts[0])
    assert_reply(r.cmd(""), 235, "2.7.0")
    assert_reply(r.cmd("MAIL FROM:<alice@example.test>"), 250)


def test_implicit_tls_465(mta):
    s = smtplib.SMTP_SSL("127.0.0.1", mta.port("smtps"), context=mta.ssl_context(), timeout=15)
    s.ehlo("client.test")
    assert s.has_extn("auth") and not s.has_extn("starttls")
    s.login(ALICE, mta.passwords[ALICE])
    assert s.sendmail(ALICE, [BOB], b"Subject: 465\r\n\r\nimplicit\r\n") == {}
    s.quit()
    body, _ = wait_mailbox(mta, BOB, 1)[0]
    assert b"Subject: 465" in body and b"ESMTPSA" in body


def test_relay_denied_on_25_and_unknown_user(mta):
    r = greeted(mta)
    assert_reply(r.cmd("MAIL FROM:<x@remote.test>"), 250)
    assert_reply(r.cmd("RCPT TO:<victim@elsewhere.test>"), 554, "5.7.1")
    assert_reply(r.cmd("RCPT TO:<nobody@example.test>"), 550, "5.1.1")
    assert_reply(r.cmd("RCPT TO:<bob@example.test>"), 250, "2.1.5")
    assert_reply(r.cmd("NOOP"), 250)


def test_postmaster(stack_factory):
    s = make_stack(stack_factory)
    s.ctl("alias", "add", "postmaster@example.test", ALICE, check=True)
    s.start("mta")
    r = greeted(s)
    assert_reply(r.cmd("MAIL FROM:<x@remote.test>"), 250)
    assert_reply(r.cmd("RCPT TO:<Postmaster>"), 250, "2.1.5")
    assert_reply(r.cmd("RCPT TO:<POSTMASTER@example.test>"), 250, "2.1.5")


def test_trusted_networks_may_relay(stack_factory):
    s = make_stack(stack_factory, "[smtp]\ntrusted_networks = 127.0.0.0/8\n")
    s.start("mta")
    r = greeted(s)
    assert_reply(r.cmd("MAIL FROM:<x@example.test>"), 250)
    assert_reply(r.cmd("RCPT TO:<someone@elsewhere.test>"), 250, "2.1.5")


def test_alias_resolved_at_rcpt(stack_factory):
    s = make_stack(stack_factory)
    s.ctl("alias", "add", "team@example.test", BOB, check=True)
    s.ctl("alias", "add", "team@example.test", ALICE, check=True)
    s.start("mta", "mda")
    c = smtplib.SMTP("127.0.0.1", s.port("smtp"), timeout=15)
    c.sendmail("x@remote.test", ["team@example.test"], b"Subject: team\r\n\r\nhi all\r\n")
    c.quit()
    assert b"Subject: team" in wait_mailbox(s, BOB, 1)[0][0]
    assert b"Subject: team" in wait_mailbox(s, ALICE, 1)[0][0]


# ---- bad input ----

@pytest.mark.parametrize("command,code,enhanced", [
    ("MAIL FROM:alice@example.test", 553, "5.1.7"),
    ("MAIL FROM:<@relay.test,@b.test:u@remote.test>", 553, "5.1.7"),
    ("MAIL FROM:<u;rm -rf@remote.test>", 553, "5.1.7"),
    ("MAIL FROM:<u`id`@remote.test>", 553, "5.1.7"),
    ("MAIL FROM:<u@remote.test> FOO=bar", 555, "5.5.4"),
    ("MAIL FROM:<u@remote.test> BODY=BINARY", 501, "5.5.4"),
    ("MAIL FROM:<u@remote.test> SIZE=abc", 501, "5.5.4"),
    ("MAIL FROM:<u@remote.test> SIZE=999999999999", 552, "5.3.4"),
    ("MAIL FROM:<jörg@remote.test>", 553, "5.6.7"),
    ("MAIL TO:<u@remote.test>", 501, "5.5.4"),
])
def test_bad_mail_commands(mta, command, code, enhanced):
    r = greeted(mta)
    assert_reply(r.cmd(command), code, enhanced)
    assert_reply(r.cmd("MAIL FROM:<ok@remote.test>"), 250, "2.1.0")


@pytest.mark.parametrize("command,code,enhanced", [
    ("RCPT TO:bob@example.test", 553, "5.1.3"),
    ("RCPT TO:<bob%other.test@example.test>", 553, "5.1.3"),
    ("RCPT TO:<other.test!bob@example.test>", 553, "5.1.3"),
    ("RCPT TO:<@a.test:bob@example.test>", 553, "5.1.3"),
    ("RCPT TO:<bob|cat@example.test>", 553, "5.1.3"),
    ("RCPT TO:<bob@example.test> NOTIFY=SOMETIMES", 501, "5.5.4"),
    ("RCPT TO:<bob@example.test> NOTIFY=NEVER,SUCCESS", 501, "5.5.4"),
    ("RCPT TO:<bob@example.test> ORCPT=bob@example.test", 501, "5.5.4"),
    ("RCPT TO:<bob@example.test> XYZ", 555, "5.5.4"),
    ("RCPT FROM:<bob@example.test>", 501, "5.5.4"),
])
def test_bad_rcpt_commands(mta, command, code, enhanced):
    r = greeted(mta)
    assert_reply(r.cmd("MAIL FROM:<ok@remote.test>"), 250)
    assert_reply(r.cmd(command), code, enhanced)
    assert_reply(r.cmd("RCPT TO:<bob@example.test>"), 250, "2.1.5")


def test_bad_bytes_in_commands(mta):
    r = greeted(mta)
    r.send(b"NOOP\n")
    assert_reply(r.reply(), 500, "5.5.2")
    r.send(b"NO\rOP\r\n")
    assert_reply(r.reply(), 500, "5.5.2")
    r.send(b"MAIL FROM:<a\0b@remote.test>\r\n")
    assert_reply(r.reply(), 500, "5.5.2")
    r.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\n")
    assert_reply(r.reply(), 250)
    assert_reply(r.reply(), 500, "5.5.2")
    r.send(b"X" * 5000 + b"\r\n")
    assert_reply(r.reply(), 500, "5.5.2")
    assert_reply(r.cmd("NOOP"), 250, "2.0.0")


def smuggle_session(mta, payload):
    r = greeted(mta)
    assert_reply(r.cmd("MAIL FROM:<a@remote.test>"), 250)
    assert_reply(r.cmd("RCPT TO:<bob@example.test>"), 250)
    assert r.cmd("DATA")[0] == 354
    r.send(payload)
    return r


@pytest.mark.parametrize("ending", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r\r\n"])
def test_data_smuggling_refused(mta, ending):
    smuggled = (b"Subject: a\r\n\r\nfirst" + ending +
                b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nsecond\r\n.\r\n")
    r = smuggle_session(mta, smuggled)
    # one reply for the whole thing: the smuggled commands were data
    assert_reply(r.reply(), 550, "5.6.0")
    assert_reply(r.cmd("NOOP"), 250, "2.0.0")
    assert_reply(r.cmd("MAIL FROM:<a@remote.test>"), 250)
    time.sleep(0.5)
    assert mailbox(mta, BOB) == []


def test_data_dot_unstuffing_and_long_lines(mta):
    r = smuggle_session(mta, b"Subject: dots\r\n\r\n..leading dot\r\n.\r\n")
    code, texts = r.reply()
    assert code == 250
    body, _ = wait_mailbox(mta, BOB, 1)[0]
    assert b"\r\n.leading dot\r\n" in body
    assert_reply(r.cmd("MAIL FROM:<a@remote.test>"), 250)
    assert_reply(r.cmd("RCPT TO:<bob@example.test>"), 250)
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: long\r\n\r\n" + b"x" * 1001 + b"\r\nafter\r\n.\r\n")
    assert_reply(r.reply(), 550, "5.6.0")
    assert_reply(r.cmd("NOOP"), 250)


def test_size_limits(stack_factory):
    s = make_stack(stack_factory, "[smtp]\nmax_message_size = 5000\n")
    s.start("mta", "mda")
    r = greeted(s)
    assert_reply(r.cmd("MAIL FROM:<a@remote.test> SIZE=6000"), 552, "5.3.4")
    assert_reply(r.cmd("MAIL FROM:<a@remote.test> SIZE=100"), 250)
    assert_reply(r.cmd("RCPT TO:<bob@example.test>"), 250)
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 100 + b".\r\n")
    assert_reply(r.reply(), 552, "5.3.4")
    assert_reply(r.cmd("NOOP"), 250)
    # smtplib's SIZE and a message that fits
    c = smtplib.SMTP("127.0.0.1", s.port("smtp"), timeout=15)
    c.ehlo("client.test")
    assert c.does_esmtp and int(c.esmtp_features["size"]) == 5000
    msg = b"Subject: small\r\n\r\n" + b"z" * 900 + b"\r\n"
    assert c.sendmail("a@remote.test", [BOB], msg) == {}  # smtplib sends SIZE= itself
    c.quit()
    wait_mailbox(s, BOB, 1)


def test_too_many_recipients(stack_factory):
    s = make_stack(stack_factory, "[smtp]\nmax_recipients = 2\n")
    s.start("mta")
    r = greeted(s)
    r.cmd("MAIL FROM:<a@remote.test>")
    assert_reply(r.cmd("RCPT TO:<bob@example.test>"), 250)
    assert_reply(r.cmd("RCPT TO:<alice@example.test>"), 250)
    assert_reply(r.cmd("RCPT TO:<bob@example.test>"), 452, "4.5.3")
    assert_reply(r.cmd("NOOP"), 250)


def test_too_many_errors(stack_factory):
    s = make_stack(stack_factory, "[smtp]\nmax_errors = 3\n")
    s.start("mta")
    r = greeted(s)
    assert_reply(r.cmd("BOGUS"), 500, "5.5.2")
    assert_reply(r.cmd("BOGUS"), 500, "5.5.2")
    assert_reply(r.cmd("BOGUS"), 500, "5.5.2")
    assert_reply(r.reply(), 421, "4.7.0")
    assert r.closed()


def test_idle_timeout(stack_factory):
    s = make_stack(stack_factory, "[smtp]\nidle_timeout = 1\n")
    s.start("mta")
    r = greeted(s)
    start = time.monotonic()
    assert_reply(r.reply(), 421, "4.4.2")
    assert time.monotonic() - start < 5
    assert r.closed()


def test_connections_per_client(stack_factory):
    s = make_stack(stack_factory, "[server]\nmax_connections_per_ip = 2\n")
    s.start("mta")
    time.sleep(1)  # let the harness's readiness probes go away
    a, b = Raw(s.port("smtp")), Raw(s.port("smtp"))
    assert a.reply()[0] == 220 and b.reply()[0] == 220
    c = Raw(s.port("smtp"))
    assert_reply(c.reply(), 421, "4.7.0")
    a.close()
    b.close()


# ---- extensions ----

def test_pipelining(mta):
    r = greeted(mta)
    r.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\n"
           "RCPT TO:<nobody@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert_reply(r.reply(), 250, "2.1.0")
    assert_reply(r.reply(), 250, "2.1.5")
    assert_reply(r.reply(), 550, "5.1.1")
    assert_reply(r.reply(), 250, "2.1.5")
    assert r.reply()[0] == 354
    r.send("Subject: piped\r\n\r\nbody\r\n.\r\nNOOP\r\n")
    assert_reply(r.reply(), 250, "2.0.0")
    assert_reply(r.reply(), 250, "2.0.0")
    wait_mailbox(mta, BOB, 1)
    wait_mailbox(mta, ALICE, 1)


def test_bdat_chunking(mta):
    r = greeted(mta)
    r.cmd("MAIL FROM:<a@remote.test>")
    r.cmd("RCPT TO:<bob@example.test>")
    part1 = b"Subject: chunks\r\n\r\nfirst part "
    part2 = b"second part\r\n.not stuffed\r\n"
    r.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert_reply(r.reply(), 250, "2.0.0")
    r.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, texts = r.reply()
    assert code == 250 and texts[0].startswith("2.0.0 Ok: queued as ")
    body, _ = wait_mailbox(mta, BOB, 1)[0]
    assert b"first part second part\r\n.not stuffed\r\n" in body
    # BDAT out of order: its bytes are read and dropped, then 503
    junk = b"RSET\r\nQUIT\r\n"
    r.send(b"BDAT %d LAST\r\n" % len(junk) + junk)
    assert_reply(r.reply(), 503, "5.5.1")
    assert_reply(r.cmd("NOOP"), 250)
    r.cmd("MAIL FROM:<a@remote.test>")
    r.cmd("RCPT TO:<bob@example.test>")
    r.send(b"BDAT 7 LAST\r\nbare\nLF")
    assert_reply(r.reply(), 550, "5.6.0")
    assert_reply(r.cmd("DATA"), 503, "5.5.1")
    assert_reply(r.cmd("BDAT x"), 501, "5.5.4")


def test_smtputf8(mta):
    c = smtplib.SMTP("127.0.0.1", mta.port("smtp"), timeout=15)
    c.ehlo("client.test")
    assert c.has_extn("smtputf8")
    msg = "From: Jörg <jörg@remote.test>\r\nSubject: grüße\r\n\r\nünïcode\r\n".encode()
    assert c.sendmail("jörg@remote.test", [BOB], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    c.quit()
    body, _ = wait_mailbox(mta, BOB, 1)[0]
    assert "Subject: grüße".encode() in body
    assert b"with UTF8SMTP id" in body
    r = greeted(mta)
    r.cmd("MAIL FROM:<a@remote.test>")
    assert_reply(r.cmd("RCPT TO:<björn@example.test>"), 553, "5.6.7")


def test_dsn_parameters_accepted(mta):
    r = greeted(mta)
    assert_reply(r.cmd("MAIL FROM:<a@remote.test> RET=HDRS ENVID=abc+2Bdef"), 250)
    assert_reply(r.cmd("RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE "
                       "ORCPT=rfc822;bob@example.test"), 250, "2.1.5")
    assert_reply(r.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER"), 250, "2.1.5")
    assert_reply(r.cmd("RSET"), 250)
    assert_reply(r.cmd("MAIL FROM:<a@remote.test> RET=MAYBE"), 501, "5.5.4")


def test_starttls_discards_pipelined_plaintext(mta):
    r = greeted(mta)
    r.send("STARTTLS\r\nMAIL FROM:<injected@remote.test>\r\n")
    assert_reply(r.reply(), 220, "2.0.0")
    r.starttls(mta.ssl_context())
    # the injected MAIL was dropped: the session starts over
    assert_reply(r.cmd("MAIL FROM:<a@remote.test>"), 503, "5.5.1")
    assert r.cmd("EHLO client.test")[0] == 250
    assert_reply(r.cmd("STARTTLS"), 503, "5.5.1")


def test_swaks(mta):
    run = subprocess.run(["swaks", "--server", f"127.0.0.1:{mta.port('smtp')}",
                          "--from", "sender@remote.test", "--to", BOB,
                          "--header", "Subject: from swaks", "--body", "swaks body"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "250 2.0.0 Ok: queued as" in run.stdout
    run = subprocess.run(["swaks", "--server", f"127.0.0.1:{mta.port('submission')}", "--tls",
                          "--auth", "PLAIN", "--auth-user", ALICE,
                          "--auth-password", mta.passwords[ALICE],
                          "--from", ALICE, "--to", BOB, "--header", "Subject: swaks auth"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    msgs = wait_mailbox(mta, BOB, 2)
    assert any(b"Subject: swaks auth" in m[0] for m in msgs)


def test_junk_command_limit(stack_factory):
    # Well-formed commands that move no mail (Postfix's smtpd_junk_command_limit)
    # are counted apart from errors; a message accepted starts the count again.
    s = make_stack(stack_factory, "[smtp]\njunk_command_limit = 4\nmax_errors = 100\n")
    s.start("mta", "mda")
    r = greeted(s)
    assert_reply(r.cmd("NOOP"), 250, "2.0.0")
    assert_reply(r.cmd("VRFY bob"), 252, "2.5.2")
    assert_reply(r.cmd("HELP"), 214, "2.0.0")
    assert_reply(r.cmd("RSET"), 250, "2.0.0")
    assert_reply(r.cmd(f"MAIL FROM:<{ALICE}>"), 250, "2.1.0")
    assert_reply(r.cmd(f"RCPT TO:<{BOB}>"), 250, "2.1.5")
    assert_reply(r.cmd("DATA"), 354)
    assert_reply(r.cmd("Subject: junk\r\n\r\nhi\r\n."), 250, "2.0.0")
    for _ in range(4):
        assert_reply(r.cmd("NOOP"), 250, "2.0.0")
    assert_reply(r.cmd("NOOP"), 421, "4.7.0")
    assert r.closed()
    # errors are a count of their own: a fresh session is not cut off by them
    r = greeted(s)
    assert_reply(r.cmd("BOGUS"), 500, "5.5.2")
    assert_reply(r.cmd("NOOP"), 250, "2.0.0")
