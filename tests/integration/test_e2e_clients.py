"""End to end, as a user would: the whole stack under `mailctl up`, driven by
the real clients the README names (swaks, curl, mutt, fetchmail, mbsync,
openssl s_client) and by Python's smtplib/imaplib/poplib for SCRAM.

One supervised stack serves the whole module (starting it under the
sanitizers takes seconds); each test uses its own subjects so that the
order of the tests does not matter. The supervisor's stderr, where every
daemon's log goes, must hold no sanitizer report at the end.
"""
import base64
import imaplib
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from conftest import BIN, DAEMON_PORTS, Stack
from scram import ScramClient, plain

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
CAROL_PASSWORD = "carol-Pass-3"


class Demo:
    """A stack run by `mailctl up`, as `./mailstack up` runs it."""

    def __init__(self, stack):
        self.stack = stack
        self.out_path = stack.path("up.stdout")
        self.err_path = stack.path("up.stderr")
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([os.path.join(BIN, "mailctl"), "up", "--dir", stack.dir],
                                     stdout=self.out, stderr=self.err, env=stack.env())
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if "mailstack is up" in self.stdout():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("mailctl up did not come up:\n" + self.stderr()[-3000:])

    def stdout(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e") / "var"
    d.mkdir()
    stack = Stack(d)
    up = Demo(stack)
    stack.demo = up
    yield stack
    rc = up.stop()
    log = up.stderr()
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log[-6000:]
    assert rc == 0, log[-3000:]


def cafile(stack):
    return stack.path("tls", "cert.pem")


def run(argv, timeout=60, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def curl(stack, user, *args, timeout=30):
    return run(["curl", "-sS", "--max-time", "20", "--cacert", cafile(stack),
                "--user", f"{user}:{stack.passwords[user]}", *args], timeout=timeout)


def swaks(stack, *args):
    return run(["swaks", "--server", "127.0.0.1", "--timeout", "20", *args])


def queued_id(text):
    m = re.search(r"250 2\.0\.0 Ok: queued as (\S+)", text)
    assert m, text
    return m.group(1)


def wait_for_uid(stack, user, marker, timeout=30):
    """Polls the user's INBOX over IMAPS until a message holding marker is
    there; returns its UID."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with imaplib.IMAP4_SSL("127.0.0.1", stack.port("imaps"),
                               ssl_context=stack.ssl_context(), timeout=10) as m:
            m.login(user, stack.passwords[user])
            m.select("INBOX", readonly=True)
            typ, data = m.uid("SEARCH", "TEXT", marker)
            assert typ == "OK"
            if data[0].split():
                return int(data[0].split()[-1])
        time.sleep(0.2)
    raise AssertionError(f"{marker} never reached {user}")


def pop3_index(stack, user, marker):
    """The POP3 message number of the message holding marker (over POP3S)."""
    p = poplib.POP3_SSL("127.0.0.1", stack.port("pop3s"), context=stack.ssl_context(),
                        timeout=10)
    try:
        p.user(user)
        p.pass_(stack.passwords[user])
        count = p.stat()[0]
        for i in range(count, 0, -1):
            if marker.encode() in b"\n".join(p.retr(i)[1]):
                return i
    finally:
        p.quit()
    raise AssertionError(f"{marker} not in {user}'s maildrop")


# ---- sending and reading ----

def test_swaks_submission_starttls_auth_reaches_bob_over_imap_and_pop3(demo):
    marker = "e2e-swaks-marker"
    r = swaks(demo, "--port", str(demo.port("submission")), "--tls", "--auth", "PLAIN",
              "--auth-user", ALICE, "--auth-password", demo.passwords[ALICE],
              "--from", ALICE, "--to", BOB, "--header", f"Subject: {marker}",
              "--body", f"Hello Bob, {marker}.")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<-  220 2.0.0 Ready to start TLS" in r.stdout
    assert "<~  235 2.7.0 Authentication successful" in r.stdout
    lid = queued_id(r.stdout)

    uid = wait_for_uid(demo, BOB, marker)
    # IMAP over STARTTLS (curl) and implicit TLS (curl): the lifecycle id is
    # in the Received field that the mta added.
    for url, extra in ((f"imap://127.0.0.1:{demo.port('imap')}/INBOX;UID={uid}", ["--ssl-reqd"]),
                       (f"imaps://127.0.0.1:{demo.port('imaps')}/INBOX;UID={uid}", [])):
        r = curl(demo, BOB, *extra, url)
        assert r.returncode == 0, r.stderr
        assert f"Subject: {marker}" in r.stdout
        assert f"with ESMTPSA id {lid}" in r.stdout
        assert "authenticated as alice@example.test" in r.stdout
        assert f"Hello Bob, {marker}." in r.stdout

    n = pop3_index(demo, BOB, marker)
    for url, extra in ((f"pop3://127.0.0.1:{demo.port('pop3')}/{n}", ["--ssl-reqd"]),
                       (f"pop3s://127.0.0.1:{demo.port('pop3s')}/{n}", [])):
        r = curl(demo, BOB, *extra, url)
        assert r.returncode == 0, r.stderr
        assert f"with ESMTPSA id {lid}" in r.stdout
        assert f"Hello Bob, {marker}." in r.stdout


def test_curl_readme_recipe_smtps_and_submission(demo, tmp_path):
    for port_name, scheme, extra in (("submission", "smtp", ["--ssl-reqd"]),
                                     ("smtps", "smtps", [])):
        marker = f"e2e-curl-{port_name}"
        msg = tmp_path / f"{port_name}.txt"
        msg.write_bytes(f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {marker}\r\n\r\n"
                        f"Hello Bob.\r\n".encode())
        r = curl(demo, ALICE, *extra, "--mail-from", ALICE, "--mail-rcpt", BOB,
                 "--upload-file", str(msg), f"{scheme}://127.0.0.1:{demo.port(port_name)}")
        assert r.returncode == 0, r.stderr
        wait_for_uid(demo, BOB, marker)


def test_relay_from_outside_is_denied_on_port_25(demo):
    r = swaks(demo, "--port", str(demo.port("smtp")), "--from", ALICE,
              "--to", "someone@outside.example", "--quit-after", "RCPT")
    assert "<** 554 5.7.1 <someone@outside.example>: Relay access denied" in r.stdout, r.stdout
    # The same session is still usable: a local recipient is accepted after it.
    with smtplib.SMTP("127.0.0.1", demo.port("smtp"), timeout=10) as s:
        s.ehlo("client.example")
        assert s.mail("someone@outside.example") == (250, b"2.1.0 Ok")
        code, text = s.rcpt("friend@elsewhere.example")
        assert (code, text) == (554, b"5.7.1 <friend@elsewhere.example>: Relay access denied")
        assert s.rcpt(BOB) == (250, b"2.1.5 Ok")


def test_submission_refuses_mail_before_auth(demo):
    r = swaks(demo, "--port", str(demo.port("submission")), "--from", ALICE, "--to", BOB,
              "--quit-after", "MAIL")
    assert "<** 530 5.7.0 Authentication required" in r.stdout, r.stdout


# ---- a new user: PLAIN and SCRAM-SHA-256 over SMTP, IMAP and POP3 ----

@pytest.fixture(scope="module")
def carol(demo):
    r = demo.ctl("user", "add", CAROL, input=f"{CAROL_PASSWORD}\n{CAROL_PASSWORD}\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"added {CAROL} (mailbox ")
    demo.passwords[CAROL] = CAROL_PASSWORD
    listing = demo.ctl("user", "list").stdout
    assert re.search(r"^carol@example\.test\s+unlimited\s+unlimited\s+0\s+0$", listing, re.M)
    return demo


def smtp_for(stack, port_name):
    if port_name == "smtps":
        return smtplib.SMTP_SSL("127.0.0.1", stack.port("smtps"), timeout=10,
                                context=stack.ssl_context())
    s = smtplib.SMTP("127.0.0.1", stack.port("submission"), timeout=10)
    s.starttls(context=stack.ssl_context())
    return s


@pytest.mark.parametrize("port_name", ["submission", "smtps"])
def test_new_user_smtp_plain_and_scram(carol, port_name):
    with smtp_for(carol, port_name) as s:
        s.ehlo("client.example")
        assert s.docmd("AUTH", "PLAIN " + plain(CAROL, CAROL_PASSWORD)) == (
            235, b"2.7.0 Authentication successful")
    with smtp_for(carol, port_name) as s:
        s.ehlo("client.example")
        client = ScramClient(CAROL, CAROL_PASSWORD)
        code, challenge = s.docmd("AUTH", "SCRAM-SHA-256 " + client.first())
        assert code == 334, challenge
        code, server_final = s.docmd(client.final(challenge.decode()))
        assert code == 334, server_final
        assert client.verify(server_final.decode())
        assert s.docmd("") == (235, b"2.7.0 Authentication successful")
        # and carol can send as herself, to bob
        assert s.mail(CAROL) == (250, b"2.1.0 Ok")
        assert s.rcpt(BOB) == (250, b"2.1.5 Ok")
        code, text = s.data(f"From: {CAROL}\r\nTo: {BOB}\r\nSubject: e2e-carol-{port_name}"
                            f"\r\n\r\nhi\r\n".encode())
        assert code == 250 and text.startswith(b"2.0.0 Ok: queued as "), text
    wait_for_uid(carol, BOB, f"e2e-carol-{port_name}")


def imap_for(stack, port_name):
    if port_name == "imaps":
        return imaplib.IMAP4_SSL("127.0.0.1", stack.port("imaps"),
                                 ssl_context=stack.ssl_context(), timeout=10)
    m = imaplib.IMAP4("127.0.0.1", stack.port("imap"), timeout=10)
    m.starttls(ssl_context=stack.ssl_context())
    return m


@pytest.mark.parametrize("port_name", ["imap", "imaps"])
def test_new_user_imap_plain_and_scram(carol, port_name):
    m = imap_for(carol, port_name)
    typ, _ = m.authenticate("PLAIN", lambda _: f"\0{CAROL}\0{CAROL_PASSWORD}".encode())
    assert typ == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()

    m = imap_for(carol, port_name)
    client = ScramClient(CAROL, CAROL_PASSWORD)
    steps = []

    def answer(challenge):
        steps.append(challenge)
        if len(steps) == 1:
            return base64.b64decode(client.first())
        if len(steps) == 2:
            return base64.b64decode(client.final(base64.b64encode(challenge).decode()))
        assert client.verify(base64.b64encode(challenge).decode())
        return b""

    typ, data = m.authenticate("SCRAM-SHA-256", answer)
    assert typ == "OK" and data[-1].endswith(b"Logged in"), data
    assert len(steps) == 3
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def pop_for(stack, port_name):
    if port_name == "pop3s":
        return poplib.POP3_SSL("127.0.0.1", stack.port("pop3s"), context=stack.ssl_context(),
                               timeout=10)
    p = poplib.POP3("127.0.0.1", stack.port("pop3"), timeout=10)
    p.stls(context=stack.ssl_context())
    return p


@pytest.mark.parametrize("port_name", ["pop3", "pop3s"])
def test_new_user_pop3_plain_and_scram(carol, port_name):
    p = pop_for(carol, port_name)
    assert p._shortcmd("AUTH PLAIN " + plain(CAROL, CAROL_PASSWORD)).startswith(
        b"+OK Logged in, ")
    p.quit()

    p = pop_for(carol, port_name)
    client = ScramClient(CAROL, CAROL_PASSWORD)
    assert p._shortcmd("AUTH SCRAM-SHA-256") == b"+ "
    p._putcmd(client.first())
    challenge = p._getline()[0]
    assert challenge.startswith(b"+ ")
    p._putcmd(client.final(challenge[2:].decode()))
    server_final = p._getline()[0]
    assert server_final.startswith(b"+ ") and client.verify(server_final[2:].decode())
    p._putcmd("")
    assert p._getresp().startswith(b"+OK Logged in, ")
    assert p.stat()[0] >= 0
    p.quit()


# ---- mutt, fetchmail, mbsync ----

def muttrc(stack, tmp_path, user):
    """The README's muttrc, with the certificate pointed at var/tls/cert.pem."""
    rc = tmp_path / f"muttrc.{user.split('@')[0]}"
    pw = stack.passwords[user]
    rc.write_text(
        f'set imap_user = "{user}"\n'
        f'set imap_pass = "{pw}"\n'
        f'set folder = "imaps://127.0.0.1:{stack.port("imaps")}/"\n'
        'set spoolfile = "+INBOX"\n'
        'set record = "+Sent"\n'
        'set postponed = "+Drafts"\n'
        f'set smtp_url = "smtp://{user.replace("@", "%40")}@127.0.0.1:{stack.port("submission")}/"\n'
        f'set smtp_pass = "{pw}"\n'
        'set ssl_starttls = yes\n'
        'set ssl_force_tls = yes\n'
        f'set from = "{user}"\n'
        f'set certificate_file = "{cafile(stack)}"\n'
        'set header_cache = ""\nset message_cachedir = ""\n'
        'set sort = date\nset mail_check = 1\nset timeout = 1\n')
    return rc


def test_mutt_sends_files_in_sent_and_bob_reads_it_under_tmux(demo, tmp_path):
    marker = "e2e-mutt-marker"
    env = dict(os.environ, HOME=str(tmp_path), TERM="xterm")
    r = run(["mutt", "-n", "-F", str(muttrc(demo, tmp_path, ALICE)), "-s", marker, BOB],
            input=f"Hello from mutt, {marker}.\n", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for_uid(demo, BOB, marker)
    # mutt saved its copy in alice's Sent over IMAP APPEND.
    with imaplib.IMAP4_SSL("127.0.0.1", demo.port("imaps"), ssl_context=demo.ssl_context(),
                           timeout=10) as m:
        m.login(ALICE, demo.passwords[ALICE])
        m.select("Sent", readonly=True)
        typ, data = m.search(None, "SUBJECT", marker)
        assert typ == "OK" and len(data[0].split()) == 1

    # bob reads it in mutt's index and pager.
    sock = f"qa-e2e-{os.getpid()}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    rc = muttrc(demo, tmp_path, BOB)
    run([*tmux, "new-session", "-d", "-x", "150", "-y", "40",
         f"env HOME={tmp_path} TERM=xterm mutt -n -F {rc}"], env=env)
    try:
        def screen():
            return run([*tmux, "capture-pane", "-p"]).stdout

        deadline = time.monotonic() + 30
        while marker not in screen() and time.monotonic() < deadline:
            time.sleep(0.2)
        index = screen()
        assert marker in index, index
        row = [line for line in index.splitlines() if marker in line][0]
        number = row.split()[0]
        run([*tmux, "send-keys", number, "Enter"])  # jump to it
        run([*tmux, "send-keys", "Enter"])          # open it
        deadline = time.monotonic() + 20
        while f"Hello from mutt, {marker}." not in screen() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"Hello from mutt, {marker}." in screen(), screen()
        run([*tmux, "send-keys", "q", "q"])
    finally:
        run([*tmux, "kill-server"])


def test_fetchmail_over_pop3s_and_mbsync_over_imaps(demo, tmp_path):
    marker = "e2e-fetch-marker"
    with smtp_for(demo, "submission") as s:
        s.login(ALICE, demo.passwords[ALICE])
        s.sendmail(ALICE, [BOB], f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {marker}\r\n\r\n"
                   f"fetch me\r\n".encode())
    wait_for_uid(demo, BOB, marker)

    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    # fetchmail matches the certificate against a host name, not an address.
    rc.write_text(
        f"poll localhost protocol pop3 port {demo.port('pop3s')}\n"
        f"  user '{BOB}' there with password '{demo.passwords[BOB]}' is 'root' here\n"
        f"  ssl sslproto tls1.2+ sslcertck sslcertfile '{cafile(demo)}'\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n  keep fetchall\n")
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Subject: {marker}" in out.read_text()

    maildir = tmp_path / "maildir"
    maildir.mkdir()
    conf = tmp_path / "mbsyncrc"
    conf.write_text(
        f"IMAPAccount bob\nHost 127.0.0.1\nPort {demo.port('imaps')}\nUser {BOB}\n"
        f"Pass {demo.passwords[BOB]}\nSSLType IMAPS\nCertificateFile {cafile(demo)}\n\n"
        "IMAPStore remote\nAccount bob\n\n"
        f"MaildirStore local\nPath {maildir}/\nInbox {maildir}/INBOX\nSubFolders Verbatim\n\n"
        "Channel bob\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nSyncState *\n")
    r = run(["mbsync", "-c", str(conf), "-a"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    texts = [p.read_text(errors="replace") for p in (maildir / "INBOX").glob("*/*")]
    assert any(f"Subject: {marker}" in t for t in texts)
    for folder in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
        assert (maildir / folder).is_dir(), folder


@pytest.mark.parametrize("port_name,starttls", [
    ("submission", "smtp"), ("smtp", "smtp"), ("imap", "imap"), ("pop3", "pop3"),
    ("smtps", None), ("imaps", None), ("pop3s", None)])
def test_openssl_s_client_verifies_the_certificate(demo, port_name, starttls):
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{demo.port(port_name)}",
            "-CAfile", cafile(demo), "-verify_return_error", "-verify_ip", "127.0.0.1",
            "-ign_eof", "-crlf"]
    if starttls:
        argv[2:2] = ["-starttls", starttls]
    quit_line = {"smtp": "QUIT", "submission": "QUIT", "smtps": "QUIT", "imap": "a LOGOUT",
                 "imaps": "a LOGOUT", "pop3": "QUIT", "pop3s": "QUIT"}[port_name]
    r = run(argv, input=quit_line + "\n", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Verify return code: 0 (ok)" in r.stdout
    assert re.search(r"New, TLSv1\.[23], Cipher is ", r.stdout), r.stdout
    bye = {"QUIT": ("221 2.0.0 Bye" if "smtp" in port_name or port_name == "submission"
                    else "+OK"), "a LOGOUT": "* BYE"}[quit_line]
    assert bye in r.stdout, r.stdout


# ---- supervision ----

def test_sigkill_of_each_daemon_is_restarted_and_mail_still_flows(demo):
    old = {}
    for name in ("mta", "mda", "pop3d", "imapd"):
        with open(demo.path("run", f"{name}.pid")) as f:
            old[name] = int(f.read().split()[0])
        os.kill(old[name], signal.SIGKILL)
    deadline = time.monotonic() + 60
    pending = set(old)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            try:
                with open(demo.path("run", f"{name}.pid")) as f:
                    pid = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid != old[name] and all(answers(demo.port(p)) for p in DAEMON_PORTS[name]) \
                    and (name != "mda" or os.path.exists(demo.path("run", "lmtp.sock"))):
                pending.discard(name)
        time.sleep(0.1)
    assert not pending, demo.demo.stderr()[-3000:]
    log = demo.demo.stderr()
    for name, pid in old.items():
        assert re.search(r'msg="daemon died; restarting" daemon=%s pid=%d '
                         r'how="killed by signal 9 \(SIGKILL\)"' % (name, pid), log), log[-3000:]
    st = demo.ctl("status")
    assert st.returncode == 0, st.stdout
    marker = "e2e-after-restart"
    r = swaks(demo, "--port", str(demo.port("submission")), "--tls", "--auth", "PLAIN",
              "--auth-user", ALICE, "--auth-password", demo.passwords[ALICE],
              "--from", ALICE, "--to", BOB, "--header", f"Subject: {marker}")
    assert r.returncode == 0, r.stdout
    wait_for_uid(demo, BOB, marker)
    assert pop3_index(demo, BOB, marker) >= 1


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_tools_are_installed():
    for tool in ("swaks", "curl", "mutt", "fetchmail", "mbsync", "openssl", "tmux"):
        assert shutil.which(tool), tool


def test_user_add_refused_for_an_address_without_a_mailbox_leaves_no_user(demo):
    # The store refuses a '/' in a mailbox address; the user directory must
    # not keep an account that can never have a mailbox.
    r = demo.ctl("user", "add", "dan/x@example.test", input="dan-Pass-4\ndan-Pass-4\n")
    assert r.returncode == 1
    assert "dan/x@example.test" not in demo.ctl("user", "list").stdout
