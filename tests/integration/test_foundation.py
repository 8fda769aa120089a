"""The foundation (issue 2): each daemon's start-up errors, and the "Done when"
checks: TLS handshakes on every port, and a user added with `mailctl user add`
authenticating with PLAIN and SCRAM-SHA-256 over SMTP, IMAP and POP3.

Start-up errors are checked to the letter: a bad config names file:line:key,
a port in use names the port, a missing certificate names the file, and an
unreadable data directory names the directory.
"""
import base64
import imaplib
import os
import poplib
import pwd
import re
import smtplib
import socket
import subprocess

import pytest

from conftest import DAEMON_PORTS
from scram import ScramClient, plain

DAEMONS = ("mta", "mda", "pop3d", "imapd")
CAROL = "carol@example.test"
CAROL_PW = "carol-Secret-3"


def run_daemon(stack, name, *args, timeout=60, preexec_fn=None):
    """Runs a daemon that is expected to refuse to start."""
    return subprocess.run([os.path.join(stack.bin, name), *args], capture_output=True,
                          text=True, timeout=timeout, env=stack.env(), preexec_fn=preexec_fn)


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def config_lines(stack):
    with open(stack.path("mailstack.conf")) as f:
        return f.read().count("\n")


# ---- bad config ----

@pytest.mark.parametrize("entry,message", [
    ("[smtp]\nmax_sise = 10", "unknown key 'smtp.max_sise'"),
    ("[server]\nport_base = ten", "bad value for server.port_base: 'ten' is not a number"),
    ("[log]\ntranscript = perhaps", None),
])
def test_bad_config_stops_every_daemon_and_config_check(stack, entry, message):
    conf = stack.path("mailstack.conf")
    line = config_lines(stack) + 3  # append_config adds a blank line, the section, the key
    stack.append_config(entry)
    key = entry.split("\n")[1].split(" =")[0]
    section = entry.split("]")[0][1:]
    check = stack.ctl("config", "check")
    assert check.returncode == 1
    if message is None:
        # Whatever the wording, it names the file, the line and the key.
        assert check.stderr.startswith(f"mailctl: {conf}:{line}: "), check.stderr
        assert f"{section}.{key}" in check.stderr
        message = check.stderr[len(f"mailctl: {conf}:{line}: "):].rstrip("\n")
    else:
        assert check.stderr == f"mailctl: {conf}:{line}: {message}\n"
    for name in DAEMONS:
        r = run_daemon(stack, name, "--dir", stack.dir)
        assert r.returncode == 1, name
        assert last_line(r.stderr) == f"{name}: {conf}:{line}: {message}", name
    up = stack.ctl("up")
    assert (up.returncode, up.stderr) == (1, f"mailctl: {conf}:{line}: {message}\n")


def test_config_file_option_names_that_file(stack, tmp_path):
    other = tmp_path / "other.conf"
    other.write_text("[server]\nhostname = a\nbogus = 1\n")
    r = run_daemon(stack, "mta", "--dir", stack.dir, "--config", str(other))
    assert r.returncode == 1
    assert last_line(r.stderr) == f"mta: {other}:3: unknown key 'server.bogus'"


# ---- a port in use ----

@pytest.mark.parametrize("name,proto", [("mta", "submission"), ("pop3d", "pop3s"),
                                        ("imapd", "imap")])
def test_port_in_use_names_the_port(stack, name, proto):
    port = stack.port(proto)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen(1)
    try:
        r = run_daemon(stack, name, "--dir", stack.dir)
    finally:
        blocker.close()
    assert r.returncode == 1
    assert last_line(r.stderr) == (f"{name}: cannot listen on 127.0.0.1:{port}: "
                                   "address already in use")


# ---- a missing certificate ----

def test_missing_certificate_names_the_file(stack):
    cert = stack.path("tls", "cert.pem")
    os.unlink(cert)
    for name in DAEMONS:
        r = run_daemon(stack, name, "--dir", stack.dir)
        assert r.returncode == 1, name
        assert last_line(r.stderr) == (f"{name}: cannot read certificate {cert}: "
                                       "No such file or directory"), name
    up = stack.ctl("up")
    assert up.returncode == 1
    assert re.search(r"^mailctl: (mta|mda|pop3d|imapd) could not start \(exit status 1\): "
                     r"\1: cannot read certificate %s: No such file or directory$"
                     % re.escape(cert), up.stderr, re.M), up.stderr


def test_missing_key_names_the_file(stack):
    key = stack.path("tls", "key.pem")
    os.unlink(key)
    r = run_daemon(stack, "imapd", "--dir", stack.dir)
    assert r.returncode == 1
    assert last_line(r.stderr) == (f"imapd: cannot read private key {key}: "
                                   "No such file or directory")


# ---- an unreadable data directory ----

def test_missing_data_directory(stack, tmp_path):
    missing = tmp_path / "no-such-dir"
    for name in DAEMONS:
        r = run_daemon(stack, name, "--dir", str(missing))
        assert r.returncode == 1, name
        assert last_line(r.stderr) == (f"{name}: data directory {missing} does not exist; "
                                       "run mailctl init"), name


def unprivileged():
    """A preexec_fn that makes the child an ordinary user (the tests may run as
    root, for whom no permission bit is ever in the way)."""
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")

    def drop():
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
    return drop


def test_unreadable_data_directory(stack, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "mailstack.conf").write_text("")
    os.chmod(locked, 0o000)
    # The binaries must be reachable for the unprivileged child.
    try:
        for name in DAEMONS:
            r = run_daemon(stack, name, "--dir", str(locked), preexec_fn=unprivileged())
            assert r.returncode == 1, name
            assert last_line(r.stderr) == (f"{name}: data directory {locked} is not readable: "
                                           "Permission denied"), r.stderr
        r = subprocess.run([os.path.join(stack.bin, "mailctl"), "config", "--dir", str(locked)],
                           capture_output=True, text=True, timeout=60, env=stack.env(),
                           preexec_fn=unprivileged())
        assert r.returncode == 1
        assert r.stderr == f"mailctl: cannot read data directory {locked}: Permission denied\n"
    finally:
        os.chmod(locked, 0o700)


# ---- Done when: TLS on every port ----

STARTTLS = {"submission": "smtp", "smtp": "smtp", "imap": "imap", "pop3": "pop3"}
IMPLICIT = ("smtps", "imaps", "pop3s")


@pytest.fixture
def running(stack):
    stack.start("mda", "mta", "pop3d", "imapd")
    return stack


def s_client(stack, port, starttls=None):
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief",
            "-CAfile", stack.path("tls", "cert.pem"), "-verify_return_error"]
    if starttls:
        args += ["-starttls", starttls]
    return subprocess.run(args, input="", capture_output=True, text=True, timeout=60)


def test_openssl_s_client_handshakes_on_every_port(running):
    for proto, starttls in STARTTLS.items():
        r = s_client(running, running.port(proto), starttls)
        assert r.returncode == 0, (proto, r.stderr)
        assert "CONNECTION ESTABLISHED" in r.stderr, (proto, r.stderr)
        assert "Verification: OK" in r.stderr, (proto, r.stderr)
        assert re.search(r"Protocol version: TLSv1\.[23]", r.stderr), (proto, r.stderr)
    for proto in IMPLICIT:
        r = s_client(running, running.port(proto))
        assert r.returncode == 0, (proto, r.stderr)
        assert "CONNECTION ESTABLISHED" in r.stderr, (proto, r.stderr)
        assert "Verification: OK" in r.stderr, (proto, r.stderr)


def test_python_clients_negotiate_tls(running):
    ctx = running.ssl_context()
    with smtplib.SMTP("127.0.0.1", running.port("submission"), timeout=30) as s:
        s.ehlo("client.test")
        assert s.has_extn("starttls")
        assert s.starttls(context=ctx)[0] == 220
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
    with smtplib.SMTP_SSL("127.0.0.1", running.port("smtps"), context=ctx, timeout=30) as s:
        assert s.ehlo("client.test")[0] == 250
    imap = imaplib.IMAP4("127.0.0.1", running.port("imap"), timeout=30)
    assert imap.starttls(ssl_context=ctx)[0] == "OK"
    imap.logout()
    imap = imaplib.IMAP4_SSL("127.0.0.1", running.port("imaps"), ssl_context=ctx, timeout=30)
    imap.logout()
    pop = poplib.POP3("127.0.0.1", running.port("pop3"), timeout=30)
    assert pop.stls(context=ctx).startswith(b"+OK")
    pop.quit()
    pop = poplib.POP3_SSL("127.0.0.1", running.port("pop3s"), context=ctx, timeout=30)
    pop.quit()


# ---- Done when: a user added with mailctl authenticates everywhere ----

@pytest.fixture
def carol(running):
    r = running.ctl("user", "add", CAROL, input=CAROL_PW + "\n")
    assert r.returncode == 0, r.stderr
    return running


def smtp_session(stack, proto):
    ctx = stack.ssl_context()
    if proto == "smtps":
        s = smtplib.SMTP_SSL("127.0.0.1", stack.port("smtps"), context=ctx, timeout=30)
    else:
        s = smtplib.SMTP("127.0.0.1", stack.port("submission"), timeout=30)
        s.ehlo("client.test")
        s.starttls(context=ctx)
    s.ehlo("client.test")
    return s


@pytest.mark.parametrize("proto", ["submission", "smtps"])
def test_smtp_auth_plain_and_scram(carol, proto):
    s = smtp_session(carol, proto)
    assert "PLAIN" in s.esmtp_features["auth"].split()
    assert "SCRAM-SHA-256" in s.esmtp_features["auth"].split()
    code, text = s.docmd("AUTH", "PLAIN " + plain(CAROL, CAROL_PW))
    assert (code, text) == (235, b"2.7.0 Authentication successful")
    s.quit()

    s = smtp_session(carol, proto)
    code, text = s.docmd("AUTH", "PLAIN " + plain(CAROL, "wrong"))
    assert code == 535, text
    s.close()

    s = smtp_session(carol, proto)
    client = ScramClient(CAROL, CAROL_PW)
    code, challenge = s.docmd("AUTH", "SCRAM-SHA-256 " + client.first())
    assert code == 334, challenge
    code, final = s.docmd(client.final(challenge.decode()))
    assert code == 334, final
    assert client.verify(final.decode())
    code, text = s.docmd("")
    assert (code, text) == (235, b"2.7.0 Authentication successful")
    s.quit()


def imap_raw(stack, proto):
    ctx = stack.ssl_context()
    if proto == "imaps":
        m = imaplib.IMAP4_SSL("127.0.0.1", stack.port("imaps"), ssl_context=ctx, timeout=30)
    else:
        m = imaplib.IMAP4("127.0.0.1", stack.port("imap"), timeout=30)
        m.starttls(ssl_context=ctx)
    return m


class ScramIMAP:
    """imaplib's authobject: raw bytes in, raw bytes out."""

    def __init__(self, user, password):
        self.client = ScramClient(user, password)
        self.step = 0
        self.verified = False

    def __call__(self, challenge):
        self.step += 1
        if self.step == 1:
            return base64.b64decode(self.client.first())
        if self.step == 2:
            return base64.b64decode(self.client.final(base64.b64encode(challenge).decode()))
        self.verified = self.client.verify(base64.b64encode(challenge).decode())
        return b""


@pytest.mark.parametrize("proto", ["imap", "imaps"])
def test_imap_auth_plain_and_scram(carol, proto):
    m = imap_raw(carol, proto)
    assert "AUTH=PLAIN" in m.capabilities and "AUTH=SCRAM-SHA-256" in m.capabilities
    typ, data = m.authenticate("PLAIN", lambda _: f"\0{CAROL}\0{CAROL_PW}".encode())
    assert typ == "OK"
    assert data[0].endswith(b"] Logged in")
    typ, data = m.select("INBOX")
    assert typ == "OK"
    m.logout()

    m = imap_raw(carol, proto)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.authenticate("PLAIN", lambda _: f"\0{CAROL}\0wrong".encode())
    m.logout()

    m = imap_raw(carol, proto)
    auth = ScramIMAP(CAROL, CAROL_PW)
    typ, data = m.authenticate("SCRAM-SHA-256", auth)
    assert typ == "OK" and auth.verified
    # The mailbox made by `mailctl user add` has the default folders.
    typ, folders = m.list()
    names = {line.decode().rsplit(" ", 1)[-1].strip('"') for line in folders}
    assert {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"} <= names
    m.logout()


def pop_raw(stack, proto):
    ctx = stack.ssl_context()
    if proto == "pop3s":
        return poplib.POP3_SSL("127.0.0.1", stack.port("pop3s"), context=ctx, timeout=30)
    p = poplib.POP3("127.0.0.1", stack.port("pop3"), timeout=30)
    p.stls(context=ctx)
    return p


@pytest.mark.parametrize("proto", ["pop3", "pop3s"])
def test_pop3_auth_plain_and_scram(carol, proto):
    p = pop_raw(carol, proto)
    assert "SCRAM-SHA-256" in p.capa()["SASL"]
    assert p._shortcmd("AUTH PLAIN " + plain(CAROL, CAROL_PW)).startswith(b"+OK Logged in")
    p.quit()

    p = pop_raw(carol, proto)
    with pytest.raises(poplib.error_proto):
        p._shortcmd("AUTH PLAIN " + plain(CAROL, "wrong"))
    p.close()

    p = pop_raw(carol, proto)
    client = ScramClient(CAROL, CAROL_PW)
    p._putcmd("AUTH SCRAM-SHA-256 " + client.first())
    challenge = p._getline()[0].decode()
    assert challenge.startswith("+ "), challenge
    p._putcmd(client.final(challenge[2:]))
    final = p._getline()[0].decode()
    assert final.startswith("+ ") and client.verify(final[2:]), final
    p._putcmd("")
    assert p._getline()[0].startswith(b"+OK Logged in")
    p.quit()


def test_passwd_takes_effect(carol):
    r = carol.ctl("user", "passwd", CAROL, input="carol-New-4\n")
    assert r.returncode == 0
    s = smtp_session(carol, "submission")
    code, _ = s.docmd("AUTH", "PLAIN " + plain(CAROL, CAROL_PW))
    assert code == 535
    s.close()
    s = smtp_session(carol, "submission")
    code, _ = s.docmd("AUTH", "PLAIN " + plain(CAROL, "carol-New-4"))
    assert code == 235
    s.quit()
