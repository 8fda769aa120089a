"""The mda's LMTP server (RFC 2033): replies per recipient, pipelining, BDAT,
bare LF, plus-addressing, quotas, group commit and durability under SIGKILL.

Also holds the helpers the other test_mda_*.py files import: reading a
mailbox back read-only with sqlite3, a raw LMTP client, and a fake submission
server standing in for the mta's D/run/submit.sock.
"""
import os
import signal
import socket
import sqlite3
import threading
import time

import smtplib

import pytest

DOMAIN = "example.test"


# ---- helpers shared by the test_mda_*.py files ----

# Daemons started as root switch to server.run_as; the test's data directory
# belongs to whoever runs the tests, so the mda keeps that user.
RUN_AS = "[server]\nrun_as = %s\n" % __import__("pwd").getpwuid(os.getuid()).pw_name


def make_stack(stack_factory, extra=""):
    return stack_factory(config_extra=RUN_AS + extra)


@pytest.fixture
def stack(stack_factory):
    return make_stack(stack_factory)


def mailbox(stack, user):
    """Every message of user as (folder, uid, flags, lifecycle_id, bytes), by folder then UID."""
    path = stack.path("mail", DOMAIN, f"{user}.sqlite")
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT f.name, m.uid, m.flags, m.lifecycle_id, b.data FROM messages m"
            " JOIN folders f ON f.id = m.folder_id JOIN bodies b ON b.id = m.body_id"
            " ORDER BY f.name, m.uid").fetchall()
    finally:
        db.close()
    return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]


def folders(stack, user):
    path = stack.path("mail", DOMAIN, f"{user}.sqlite")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0]: r[1] for r in db.execute("SELECT name, special_use FROM folders")}
    finally:
        db.close()


def lmtp_socket_path(stack):
    return stack.path("run", "lmtp.sock")


def lmtp_client(stack):
    client = smtplib.LMTP(lmtp_socket_path(stack), timeout=30)
    code, _ = client.ehlo_or_helo_if_needed() or (None, None)
    return client


class RawLMTP:
    """A line-level LMTP client over the unix socket, for exact transcripts."""

    def __init__(self, stack, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(lmtp_socket_path(stack))
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def reply(self):
        """One (possibly multi-line) reply as a list of lines."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def close(self):
        self.sock.close()


class FakeSubmission:
    """Listens on D/run/submit.sock like the mta's local submission server and
    records each message as (mail_from, [rcpts], data)."""

    def __init__(self, stack, refuse_rcpt=False):
        self.path = stack.path("run", "submit.sock")
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.messages = []
        self.refuse_rcpt = refuse_rcpt
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    self.session(conn)
                except (OSError, ConnectionError):
                    pass

    def session(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 fake submission\r\n")
        mail_from, rcpts = None, []
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.decode().rstrip("\r\n")
            upper = cmd.upper()
            if upper.startswith("EHLO"):
                conn.sendall(b"250-fake\r\n250 8BITMIME\r\n")
            elif upper.startswith("MAIL FROM:"):
                mail_from = cmd[10:].strip().strip("<>")
                conn.sendall(b"250 2.1.0 OK\r\n")
            elif upper.startswith("RCPT TO:"):
                if self.refuse_rcpt:
                    conn.sendall(b"550 5.1.1 no\r\n")
                else:
                    rcpts.append(cmd[8:].strip().strip("<>"))
                    conn.sendall(b"250 2.1.5 OK\r\n")
            elif upper == "DATA":
                conn.sendall(b"354 go\r\n")
                data = b""
                while True:
                    dl = f.readline()
                    if dl in (b".\r\n", b""):
                        break
                    if dl.startswith(b".."):
                        dl = dl[1:]
                    data += dl
                self.messages.append((mail_from, rcpts, data))
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif upper == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"500 what\r\n")

    def wait(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def close(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(timeout=5)


def message(subject, body="Hello.\r\n", extra=""):
    return (f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@{DOMAIN}\r\n{extra}"
            f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@test>\r\n\r\n"
            f"{body}").encode()


def lmtp_send(stack, sender, rcpts, data):
    """One transaction; returns (rcpt replies, data replies) as (code, text) lists."""
    client = smtplib.LMTP(lmtp_socket_path(stack), timeout=30)
    try:
        client.ehlo("tester")
        client.mail(sender)
        rcpt_replies = [client.rcpt(r) for r in rcpts]
        accepted = sum(1 for code, _ in rcpt_replies if code == 250)
        data_replies = []
        if accepted:
            data_replies.append(client.data(data))
            for _ in range(accepted - 1):
                data_replies.append(client.getreply())
        client.quit()
    finally:
        client.close()
    return ([(c, t.decode()) for c, t in rcpt_replies], [(c, t.decode()) for c, t in data_replies])


# ---- tests ----

def test_lhlo_advertises_extensions(stack):
    stack.start("mda")
    c = RawLMTP(stack)
    assert c.greeting[0].startswith("220 ")
    lines = c.cmd("LHLO tester")
    assert lines[0].startswith("250-")
    assert [l[4:] for l in lines[1:]] == [
        "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE 26214400", "CHUNKING",
        "SMTPUTF8", "XLIFECYCLE"]
    assert lines[-1].startswith("250 ")
    assert c.cmd("HELO tester") == ["500 5.5.1 This is an LMTP server: use LHLO"]
    assert c.cmd("FOO") == ["500 5.5.2 Unknown command"]
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    c.close()


def test_sequence_errors(stack):
    stack.start("mda")
    c = RawLMTP(stack)
    assert c.cmd("MAIL FROM:<a@b.test>") == ["503 5.5.1 Send LHLO first"]
    c.cmd("LHLO tester")
    assert c.cmd("RCPT TO:<bob@example.test>") == ["503 5.5.1 Send MAIL first"]
    assert c.cmd("DATA") == ["503 5.5.1 Send MAIL and RCPT first"]
    assert c.cmd("MAIL FROM:<a@b.test> FOO=BAR") == ["555 5.5.4 Unsupported MAIL parameter"]
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=999999999999") == ["552 5.3.4 Message too big"]
    assert c.cmd("MAIL FROM:<a@b.test>")[0].startswith("250 2.1.0 Sender OK")
    assert c.cmd("DATA") == ["503 5.5.1 No valid recipients"]
    assert c.cmd("RCPT TO:<nobody@example.test>") == ["550 5.1.1 <nobody@example.test> User unknown"]
    assert c.cmd("RSET") == ["250 2.0.0 OK"]
    assert c.cmd("NOOP") == ["250 2.0.0 OK"]
    c.close()


def test_delivery_into_inbox_with_lifecycle_id(stack):
    stack.start("mda")
    c = RawLMTP(stack)
    c.cmd("LHLO tester")
    assert c.cmd("MAIL FROM:<alice@example.test> XLIFECYCLE=0KX3F2A9Q4M7ZB1C") == [
        "250 2.1.0 Sender OK, id 0KX3F2A9Q4M7ZB1C"]
    assert c.cmd("RCPT TO:<bob@example.test>") == ["250 2.1.5 <bob@example.test> Recipient OK"]
    assert c.cmd("DATA") == ["354 Start mail input; end with <CRLF>.<CRLF>"]
    c.send(message("first") + b"..dot line\r\n.\r\n")
    assert c.reply() == ["250 2.0.0 <bob@example.test> Delivered, id 0KX3F2A9Q4M7ZB1C"]
    c.close()
    rows = mailbox(stack, "bob")
    assert len(rows) == 1
    folder, uid, flags, lifecycle, data = rows[0]
    assert (folder, uid, flags, lifecycle) == ("INBOX", 1, 0, "0KX3F2A9Q4M7ZB1C")
    assert data == (b"Return-Path: <alice@example.test>\r\nDelivered-To: bob@example.test\r\n"
                    + message("first") + b".dot line\r\n")
    roles = folders(stack, "bob")
    assert set(roles) >= {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}


def test_mixed_outcomes_per_recipient(stack):
    stack.ctl("user", "quota", "bob@example.test", "100", check=True)
    stack.start("mda")
    rcpt, data = lmtp_send(stack, "carol@other.test",
                           ["nobody@example.test", "bob@example.test", "alice@example.test"],
                           message("mixed"))
    assert rcpt == [(550, "5.1.1 <nobody@example.test> User unknown"),
                    (250, "2.1.5 <bob@example.test> Recipient OK"),
                    (250, "2.1.5 <alice@example.test> Recipient OK")]
    assert data[0] == (552, "5.2.2 <bob@example.test> Mailbox is full")
    assert data[1][0] == 250 and data[1][1].startswith("2.0.0 <alice@example.test> Delivered")
    assert mailbox(stack, "bob") == []
    assert len(mailbox(stack, "alice")) == 1


def test_quota_tempfail_and_message_count(stack_factory):
    stack = make_stack(stack_factory, "[mda]\nquota_tempfail = yes\n")
    stack.ctl("user", "quota", "bob@example.test", "0", "1", check=True)
    stack.start("mda")
    _, data = lmtp_send(stack, "a@other.test", ["bob@example.test"], message("one"))
    assert data[0][0] == 250
    _, data = lmtp_send(stack, "a@other.test", ["bob@example.test"], message("two"))
    assert data == [(452, "4.2.2 <bob@example.test> Mailbox is full")]
    assert len(mailbox(stack, "bob")) == 1


def test_plus_addressing(stack):
    stack.start("mda")
    rcpt, data = lmtp_send(stack, "a@other.test", ["bob+lists@example.test"], message("plus"))
    assert rcpt == [(250, "2.1.5 <bob+lists@example.test> Recipient OK")]
    assert data[0][0] == 250
    rows = mailbox(stack, "bob")
    assert len(rows) == 1 and rows[0][0] == "INBOX"
    assert b"Delivered-To: bob+lists@example.test\r\n" in rows[0][4]


def test_pipelining(stack):
    stack.start("mda")
    c = RawLMTP(stack)
    c.cmd("LHLO tester")
    c.send("MAIL FROM:<a@other.test>\r\nRCPT TO:<alice@example.test>\r\n"
           "RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    assert c.reply()[0].startswith("250 2.1.0")
    assert c.reply() == ["250 2.1.5 <alice@example.test> Recipient OK"]
    assert c.reply() == ["550 5.1.1 <nobody@example.test> User unknown"]
    assert c.reply() == ["250 2.1.5 <bob@example.test> Recipient OK"]
    assert c.reply()[0].startswith("354 ")
    # The data, the next transaction and QUIT in one write.
    c.send(message("piped") + b".\r\nMAIL FROM:<a@other.test>\r\nRCPT TO:<bob@example.test>\r\n"
           b"DATA\r\n" + message("piped2") + b".\r\nQUIT\r\n")
    assert c.reply()[0].startswith("250 2.0.0 <alice@example.test> Delivered")
    assert c.reply()[0].startswith("250 2.0.0 <bob@example.test> Delivered")
    assert c.reply()[0].startswith("250 2.1.0")
    assert c.reply()[0].startswith("250 2.1.5")
    assert c.reply()[0].startswith("354 ")
    assert c.reply()[0].startswith("250 2.0.0 <bob@example.test> Delivered")
    assert c.reply() == ["221 2.0.0 Bye"]
    c.close()
    assert len(mailbox(stack, "bob")) == 2
    assert len(mailbox(stack, "alice")) == 1


def test_bdat(stack):
    stack.start("mda")
    c = RawLMTP(stack)
    c.cmd("LHLO tester")
    c.cmd("MAIL FROM:<a@other.test>")
    c.cmd("RCPT TO:<bob@example.test>")
    c.cmd("RCPT TO:<alice@example.test>")
    body = message("chunked", body="line one\r\n.line starting with a dot\r\n")
    first, second = body[:30], body[30:]
    c.send(b"BDAT %d\r\n" % len(first) + first)
    assert c.reply() == [f"250 2.0.0 {len(first)} octets received"]
    assert c.cmd("DATA") == ["503 5.5.1 DATA after BDAT"]
    c.send(b"BDAT %d LAST\r\n" % len(second) + second)
    assert c.reply()[0].startswith("250 2.0.0 <bob@example.test> Delivered")
    assert c.reply()[0].startswith("250 2.0.0 <alice@example.test> Delivered")
    # BDAT 0 LAST completes an empty last chunk.
    c.cmd("MAIL FROM:<a@other.test>")
    c.cmd("RCPT TO:<bob@example.test>")
    c.send(b"BDAT %d\r\n" % len(body) + body)
    assert c.reply() == [f"250 2.0.0 {len(body)} octets received"]
    assert c.cmd("BDAT 0 LAST")[0].startswith("250 2.0.0 <bob@example.test> Delivered")
    c.close()
    rows = mailbox(stack, "bob")
    assert len(rows) == 2
    for row in rows:
        assert row[4].endswith(body)  # no dot-unstuffing in BDAT


def test_bare_lf_is_refused(stack):
    """RFC 5321 2.3.8: lines end in CRLF only; 4.1.1.4: <LF>.<LF> is not the end of
    the data. A message with a bare LF is refused with a permanent 550 for each
    recipient, through DATA and through BDAT alike."""
    stack.start("mda")
    c = RawLMTP(stack)
    c.cmd("LHLO tester")
    c.cmd("MAIL FROM:<a@other.test>")
    c.cmd("RCPT TO:<bob@example.test>")
    c.cmd("RCPT TO:<alice@example.test>")
    c.cmd("DATA")
    c.send(b"Subject: bare\r\n\r\nline with bare LF\n.\nstill data\r\n.\r\n")
    refusal = "Message refused: bare LF or CR in the data, lines must end in CRLF (RFC 5321 2.3.8)"
    assert c.reply() == [f"550 5.6.0 <bob@example.test> {refusal}"]
    assert c.reply() == [f"550 5.6.0 <alice@example.test> {refusal}"]
    c.cmd("MAIL FROM:<a@other.test>")
    c.cmd("RCPT TO:<bob@example.test>")
    chunk = b"Subject: bare\n\nbody\n"
    c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert c.reply() == [f"550 5.6.0 <bob@example.test> {refusal}"]
    # The session goes on.
    assert c.cmd("NOOP") == ["250 2.0.0 OK"]
    c.close()
    assert mailbox(stack, "bob") == [] and mailbox(stack, "alice") == []


def test_message_too_big(stack_factory):
    stack = make_stack(stack_factory, "[smtp]\nmax_message_size = 1000\n")
    stack.start("mda")
    _, data = lmtp_send(stack, "a@other.test", ["bob@example.test"],
                        message("big", body="x" * 70 + "\r\n") * 20)
    assert data == [(552, "5.3.4 <bob@example.test> Message too big")]


def test_notify_file_touched_before_reply(stack):
    """Readers (imapd IDLE) watch the store's notify file: it has changed by the time
    the 250 arrives, so a watcher can tell its client well within 100 ms."""
    stack.start("mda")
    lmtp_send(stack, "a@other.test", ["bob@example.test"], message("warm up"))
    notify = stack.path("mail", DOMAIN, "bob.notify")
    before = os.stat(notify).st_mtime_ns
    time.sleep(0.02)
    start = time.monotonic()
    _, data = lmtp_send(stack, "a@other.test", ["bob@example.test"], message("notify"))
    assert data[0][0] == 250
    assert os.stat(notify).st_mtime_ns > before
    assert time.monotonic() - start < 2.0


def test_group_commit_burst(stack):
    """Many sessions delivering to one mailbox at once: every message is stored once."""
    stack.start("mda")
    results = []
    lock = threading.Lock()

    def worker(n):
        for i in range(10):
            _, data = lmtp_send(stack, "a@other.test", ["bob@example.test", "alice@example.test"],
                                message(f"burst {n} {i}"))
            with lock:
                results.extend(code for code, _ in data)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [250] * 160
    for user in ("bob", "alice"):
        rows = mailbox(stack, user)
        assert len(rows) == 80
        assert sorted(r[1] for r in rows) == list(range(1, 81))


def test_sigkill_during_burst_keeps_every_acknowledged_message(stack):
    stack.start("mda")
    acked = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n):
        for i in range(200):
            if stop.is_set():
                return
            subject = f"kill {n} {i}"
            try:
                client = smtplib.LMTP(lmtp_socket_path(stack), timeout=10)
                client.ehlo("tester")
                client.mail("a@other.test")
                client.rcpt("bob@example.test")
                code, _ = client.data(message(subject))
                if code == 250:
                    with lock:
                        acked.append(subject)
                client.close()
            except (OSError, smtplib.SMTPException):
                return

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    stack.kill("mda", signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 60
    stored = [r[4] for r in mailbox(stack, "bob")]
    subjects = []
    for data in stored:
        for line in data.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                subjects.append(line[9:].decode())
    assert len(subjects) == len(set(subjects)), "a message was stored twice"
    missing = [s for s in acked if s not in set(subjects)]
    assert missing == [], f"acknowledged but lost: {missing[:5]}"
