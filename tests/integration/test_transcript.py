"""`mailctl transcript` (issue 8): the protocol conversations of all daemons,
with --proto, --user, --comp, --last and a bounded --follow, each line marked
with the conversation, TLS state and direction; secrets (AUTH payloads,
passwords) never reach transcript.log."""
import base64
import re
import signal
import smtplib
import subprocess
import time

import pytest

from test_mta_smtp import ALICE, BOB, make_stack
from test_trace import imap_login, pop_login, send, wait_event

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (smtp|lmtp|imap|pop3) +(\w+#\d+) +(TLS|plain) +([CS]): (.*)$")


@pytest.fixture
def full(stack_factory):
    s = make_stack(stack_factory)
    s.start("mta", "mda", "imapd", "pop3d")
    return s


def transcript(stack, *args):
    r = stack.ctl("transcript", "--no-follow", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def parsed(lines):
    out = []
    for line in lines:
        m = LINE.match(line)
        assert m, line
        out.append(m.groups())
    return out


def raw_log(stack):
    with open(stack.path("log", "transcript.log"), errors="replace") as f:
        return f.read()


def test_smtp_auth_plain_is_masked_and_tls_state_shown(full):
    password = full.passwords[ALICE]
    payload = base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode()
    c = smtplib.SMTP("127.0.0.1", full.port("submission"), timeout=15)
    c.starttls(context=full.ssl_context())
    c.ehlo()
    code, _ = c.docmd("AUTH", "PLAIN " + payload)
    assert code == 235
    c.quit()
    rows = parsed(transcript(full, "--proto", "smtp", "--last"))
    assert {r[0] for r in rows} == {"smtp"}
    assert len({r[1] for r in rows}) == 1
    texts = [(r[2], r[3], r[4]) for r in rows]
    assert ("plain", "C", "STARTTLS") in texts
    assert ("plain", "S", "220 2.0.0 Ready to start TLS") in texts
    assert ("TLS", "C", "AUTH PLAIN ****") in texts
    assert ("TLS", "S", "235 2.7.0 Authentication successful") in texts
    # before STARTTLS everything is plain, after it everything is TLS
    i = texts.index(("plain", "S", "220 2.0.0 Ready to start TLS"))
    assert all(t[0] == "plain" for t in texts[:i + 1])
    # (empty lines are test_every_smtp_line_is_a_protocol_line's business)
    assert all(t[0] == "TLS" for t in texts[i + 1:] if t[2] != "")
    log = raw_log(full)
    assert payload not in log and password not in log


def test_every_smtp_line_is_a_protocol_line(full):
    """One record per line sent: a reply written as text and CRLF in two
    writes must not show up as an extra empty line."""
    send(full, [BOB])
    rows = parsed(transcript(full, "--proto", "smtp", "--comp", "mta", "--last"))
    assert [r for r in rows if r[4] == ""] == []
    assert rows[0][3:] == ("S", "220 localhost ESMTP mailstack")


def test_smtp_auth_login_continuations_are_masked(full):
    password = full.passwords[ALICE]
    c = smtplib.SMTP("127.0.0.1", full.port("submission"), timeout=15)
    c.starttls(context=full.ssl_context())
    c.ehlo()
    assert c.docmd("AUTH", "LOGIN")[0] == 334
    assert c.docmd(base64.b64encode(ALICE.encode()).decode())[0] == 334
    assert c.docmd(base64.b64encode(password.encode()).decode())[0] == 235
    c.quit()
    texts = [(r[3], r[4]) for r in parsed(transcript(full, "--proto", "smtp", "--last"))]
    assert ("C", "AUTH LOGIN") in texts
    assert texts.count(("C", "****")) == 2
    log = raw_log(full)
    assert base64.b64encode(password.encode()).decode() not in log
    assert password not in log


def test_imap_login_and_pop3_pass_are_masked(full):
    send(full, [BOB])
    m = imap_login(full)
    m.logout()
    p = pop_login(full)
    p.quit()
    password = full.passwords[BOB]
    log = raw_log(full)
    assert password not in log
    imap = [r[4] for r in parsed(transcript(full, "--proto", "imap", "--last"))]
    assert any(re.fullmatch(r"\S+ LOGIN \S+ \*\*\*\*", t) for t in imap), imap
    pop = [(r[3], r[4]) for r in parsed(transcript(full, "--proto", "pop3", "--last"))]
    assert ("C", f"USER {BOB}") in pop
    assert ("C", "PASS ****") in pop
    assert ("C", "STLS") in pop


def test_proto_filter_keeps_one_protocol(full):
    lid = send(full, [BOB])
    wait_event(full, lid, "delivered", "mda")
    m = imap_login(full)
    m.logout()
    for proto in ("smtp", "lmtp", "imap"):
        rows = parsed(transcript(full, "--proto", proto))
        assert rows and {r[0] for r in rows} == {proto}
    # LMTP from both sides: the mta's client and the mda's server
    comps = {r[1].split("#")[0] for r in parsed(transcript(full, "--proto", "lmtp"))}
    assert comps == {"mta", "mda"}
    rows = parsed(transcript(full, "--proto", "lmtp", "--comp", "mda", "--last"))
    assert {r[1].split("#")[0] for r in rows} == {"mda"}
    assert ("C", "RCPT TO:<bob@example.test>") in [(r[3], r[4]) for r in rows]
    assert any(r[3] == "C" and r[4].startswith("MAIL FROM:<alice@example.test>") and
               f"XLIFECYCLE={lid}" in r[4] for r in rows)
    # everything, no filter: all four protocols seen so far
    assert {r[0] for r in parsed(transcript(full))} >= {"smtp", "lmtp", "imap"}


def test_user_filter(full):
    send(full, [BOB, ALICE])
    a = imap_login(full, ALICE)
    a.select("INBOX")
    a.logout()
    b = imap_login(full, BOB)
    b.select("INBOX")
    b.logout()
    rows = parsed(transcript(full, "--user", BOB, "--proto", "imap"))
    conversations = {r[1] for r in rows}
    assert len(conversations) == 1
    # from the authentication on: the session's own commands, not alice's
    assert any(r[3] == "C" and r[4].endswith("SELECT INBOX") for r in rows)
    assert not any(ALICE in r[4] for r in rows)
    alice_rows = parsed(transcript(full, "--user", ALICE, "--proto", "imap"))
    assert {r[1] for r in alice_rows}.isdisjoint(conversations)
    # smtp: alice's submission session is hers
    smtp_rows = parsed(transcript(full, "--user", ALICE, "--proto", "smtp"))
    assert any(r[4].upper().startswith("MAIL FROM:<ALICE@EXAMPLE.TEST>") for r in smtp_rows)
    assert parsed(transcript(full, "--user", "nobody@example.test")) == []


def test_follow_shows_a_new_session_then_stops_on_sigterm(full):
    proc = subprocess.Popen([full.bin + "/mailctl", "transcript", "--proto", "pop3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full.env())
    try:
        time.sleep(0.5)
        p = pop_login(full)
        p.stat()
        p.quit()
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
            if line.rstrip("\n").endswith("C: QUIT"):
                break
        rows = parsed(seen)
        assert ("C", "STAT") in [(r[3], r[4]) for r in rows]
        assert {r[0] for r in rows} == {"pop3"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_errors(full):
    r = full.ctl("transcript", "--proto", "ftp")
    assert r.returncode == 1
    assert r.stderr == "mailctl: unknown protocol 'ftp' (smtp, lmtp, imap or pop3)\n"
    r = full.ctl("transcript", "--proto", "pop3", "--last", "--user", "nobody@example.test")
    assert r.returncode == 1
    assert r.stderr.startswith("mailctl: no pop3 conversation in ")
    r = full.ctl("transcript", "extra")
    assert r.returncode == 1 and r.stderr.startswith("usage: mailctl transcript")
