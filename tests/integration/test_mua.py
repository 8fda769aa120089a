"""The mua end to end: scripting mode, and the real screen under tmux.

Each test starts the whole stack (mta, mda, imapd, pop3d), writes
D/demo-credentials as `mailctl init --demo` would, and runs build/bin/mua
with --dir D, the way `./mailstack mua alice@example.test` does. The screen
tests drive a private tmux server (80x24) with send-keys and read it with
capture-pane, polling with a bounded loop until the expected text appears.
"""
import email
import hashlib
import email.policy
import imaplib
import os
import shutil
import ssl
import subprocess
import time
import uuid

import pytest

ALICE = "alice@example.test"
BOB = "bob@example.test"
EX_USAGE, EX_DATAERR, EX_UNAVAILABLE = 64, 65, 69

EDITOR = """#!/bin/sh
# Test editor: appends $MUA_TEST_BODY to the file it is given.
printf '%s\\n' "$MUA_TEST_BODY" >> "$1"
"""


def write_demo_credentials(stack):
    path = stack.path("demo-credentials")
    with open(path, "w") as f:
        for address, password in stack.passwords.items():
            f.write(f"{address} {password}\n")
    os.chmod(path, 0o600)


@pytest.fixture
def mail(stack):
    write_demo_credentials(stack)
    stack.start("mta", "mda", "imapd", "pop3d")
    return stack


def mua(stack, account, *args, input=None, timeout=60):
    env = stack.env()
    env.pop("EDITOR", None)
    return subprocess.run([os.path.join(stack.bin, "mua"), "--dir", stack.dir, "--account",
                           account, *args], input=input, capture_output=True,
                          timeout=timeout, env=env)


def imap_login(stack, user):
    m = imaplib.IMAP4("127.0.0.1", stack.port("imap"))
    m.starttls(stack.ssl_context())
    m.login(user, stack.passwords[user])
    return m


def wait_messages(stack, user, folder, count, timeout=20):
    """Polls until folder holds count messages (delivery is asynchronous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = imap_login(stack, user)
        typ, data = m.select(folder, readonly=True)
        n = int(data[0]) if typ == "OK" else 0
        m.logout()
        if n >= count:
            return n
        time.sleep(0.2)
    raise AssertionError(f"{folder} of {user} did not reach {count} messages")


def fetch_raw(stack, user, folder, seq):
    m = imap_login(stack, user)
    m.select(folder, readonly=True)
    typ, data = m.fetch(str(seq), "(BODY.PEEK[])")
    m.logout()
    assert typ == "OK"
    return data[0][1]


def cert_fingerprint(stack):
    """The SHA-256 fingerprint of the stack's certificate, as "AB:CD:..."."""
    with open(stack.path("tls/cert.pem")) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


# ---- scripting mode ----

def test_send_list_read_roundtrip(mail, tmp_path):
    blob = bytes(range(256)) * 40 + b"\r\n.\r\nend"
    att = tmp_path / "data.bin"
    att.write_bytes(blob)
    pdf = tmp_path / "Überblick.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + os.urandom(5000))
    body = "Hallo Bob,\n.\nA line with a dot, ünïcödé, and a long one: " + "x" * 1500 + "\n"
    r = mua(mail, ALICE, "send", "--to", "Bob Example <bob@example.test>", "--cc", ALICE,
            "--subject", "Grüße — test", "--attach", str(att), "--attach", str(pdf),
            input=body.encode())
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("sent: 250 2.0.0 ")
    wait_messages(mail, BOB, "INBOX", 1)
    raw = fetch_raw(mail, BOB, "INBOX", 1)
    assert max(len(line) for line in raw.split(b"\r\n")) < 998
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects
    assert str(msg["Subject"]) == "Grüße — test"
    assert msg["To"].addresses[0].display_name == "Bob Example"
    assert msg["Date"] is not None and msg["Message-ID"] is not None
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == body
    atts = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
    assert atts["data.bin"] == blob
    assert atts["Überblick.pdf"] == pdf.read_bytes()
    assert [p.get_content_type() for p in msg.iter_attachments()] == [
        "application/octet-stream", "application/pdf"]

    r = mua(mail, BOB, "list")
    assert r.returncode == 0, r.stderr
    fields = r.stdout.decode().strip().split("\t")
    assert fields[0] == "1" and fields[2] == ALICE and fields[3] == "Grüße — test"
    assert fields[4] == "NA"
    r = mua(mail, BOB, "read", "1")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "Subject: Grüße — test" in text
    assert "ünïcödé" in text
    assert "[-- Attachment #1: data.bin (application/octet-stream, 10248 bytes) --]" in text
    # The sent copy went to alice's Sent folder; the Cc to her INBOX.
    wait_messages(mail, ALICE, "Sent", 1)
    wait_messages(mail, ALICE, "INBOX", 1)
    r = mua(mail, ALICE, "list", "--folder", "Sent")
    assert "Grüße — test" in r.stdout.decode()


def test_script_errors(mail):
    r = mua(mail, ALICE, "send", "--subject", "x", input=b"")
    assert r.returncode == EX_USAGE
    r = mua(mail, ALICE, "send", "--to", "not an address", "--subject", "x", input=b"hi")
    assert r.returncode == EX_DATAERR
    assert b"not an address" in r.stderr
    r = mua(mail, ALICE, "send", "--to", BOB, "--subject", "x", "--attach", "/nonexistent",
            input=b"hi")
    assert r.returncode == 66  # EX_NOINPUT
    r = mua(mail, ALICE, "read", "7")
    assert r.returncode == EX_DATAERR
    assert b"no message 7 in INBOX" in r.stderr
    # Header injection through the subject does not create a field.
    r = mua(mail, ALICE, "send", "--to", BOB, "--subject", "hi\r\nBcc: evil@example.test",
            input=b"body")
    assert r.returncode == 0, r.stderr
    wait_messages(mail, BOB, "INBOX", 1)
    msg = email.message_from_bytes(fetch_raw(mail, BOB, "INBOX", 1))
    assert msg["Bcc"] is None
    mail.kill("imapd")
    r = mua(mail, BOB, "list")
    assert r.returncode == EX_UNAVAILABLE
    assert b"cannot connect to IMAP server" in r.stderr
    mail.kill("mta")
    r = mua(mail, ALICE, "send", "--to", BOB, "--subject", "x", input=b"hi")
    assert r.returncode == EX_UNAVAILABLE
    assert b"cannot connect to SMTP server" in r.stderr


def test_wrong_password_and_untrusted_certificate(mail):
    with open(mail.path("demo-credentials"), "w") as f:
        f.write(f"{ALICE} wrong-password\n")
    r = mua(mail, ALICE, "list")
    assert r.returncode == EX_UNAVAILABLE
    assert b"IMAP login refused" in r.stderr
    write_demo_credentials(mail)
    # A certificate that does not verify: a clear message, and tls_verify = no for labs.
    conf = mail.path("mua.conf")
    with open(conf, "w") as f:
        f.write(f"[account lab]\naddress = {ALICE}\nread_host = localhost\n"
                f"read_port = {mail.port('imaps')}\nread_tls = implicit\n"
                f"password_command = echo {mail.passwords[ALICE]}\n")
    env = mail.env()
    r = subprocess.run([os.path.join(mail.bin, "mua"), "--config", conf, "list"],
                       capture_output=True, timeout=60, env=env)
    assert r.returncode == EX_UNAVAILABLE
    assert r.stderr.startswith(b"mua: TLS with localhost:")
    assert b"certificate verify failed: self-signed certificate" in r.stderr
    # The message names the certificate by its SHA-256 fingerprint and says how to trust it.
    assert f"certificate SHA-256 {cert_fingerprint(mail)};".encode() in r.stderr
    assert b"tls_ca_file" in r.stderr and b"tls_verify = no" in r.stderr
    with open(conf, "a") as f:
        f.write("tls_verify = no\n")
    r = subprocess.run([os.path.join(mail.bin, "mua"), "--config", conf, "list"],
                       capture_output=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr


# ---- the screen under tmux ----

class Screen:
    """One mua in a detached tmux session of a private tmux server."""

    def __init__(self, stack, tmp_path, account, body="", width=80, height=24, config=None,
                 term="xterm-256color"):
        self.socket = "mua-" + uuid.uuid4().hex[:10]
        self.name = "s"
        self.err = tmp_path / f"{account.split('@')[0]}.stderr"
        editor = tmp_path / "editor.sh"
        editor.write_text(EDITOR)
        editor.chmod(0o755)
        self.cwd = tmp_path
        where = f"--config {config}" if config is not None else f"--dir {stack.dir} {account}"
        cmd = (f"cd {tmp_path} && EDITOR={editor} MUA_TEST_BODY='{body}' "
               f"XDG_CACHE_HOME={tmp_path}/cache "
               f"ASAN_OPTIONS=detect_leaks=1 TERM={term} LANG=C.UTF-8 "
               f"{os.path.join(stack.bin, 'mua')} {where} "
               f"2>{self.err}; echo MUA-EXIT=$?; sleep 60")
        self.tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                  cmd)

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=10)

    def keys(self, *keys):
        self.tmux("send-keys", "-t", self.name, *keys)
        time.sleep(0.15)

    def type(self, text):
        self.tmux("send-keys", "-t", self.name, "-l", text)
        time.sleep(0.15)

    def text(self):
        return self.tmux("capture-pane", "-p", "-t", self.name).stdout

    def wait(self, needle, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            if needle in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} did not appear; the screen is:\n{self.text()}")

    def quit(self):
        # q leads back from any screen to the index, and from there out.
        for _ in range(5):
            if "MUA-EXIT" in self.text():
                break
            self.keys("Escape")
            self.keys("q")
            time.sleep(0.2)
        screen = self.wait("MUA-EXIT=")
        self.tmux("kill-server")
        err = self.err.read_text(errors="replace") if self.err.exists() else ""
        assert "MUA-EXIT=0" in screen, err
        assert "AddressSanitizer" not in err and "runtime error" not in err, err


@pytest.fixture
def screens():
    made = []
    yield made
    for s in made:
        s.tmux("kill-server")
