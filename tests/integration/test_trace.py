"""`mailctl trace` (issue 8): one test per lifecycle event kind the daemons
emit, driven by the real flow (submission, LMTP, IMAP, POP3, relay, bounce,
retry, Sieve), checked through `mailctl trace --json`; then --last, lookup by
Message-ID, --comp, --follow (bounded) and the errors.

Also holds helpers test_transcript.py and test_faults.py import."""
import imaplib
import json
import poplib
import re
import signal
import socket
import subprocess
import time

import pytest

from test_mta_smtp import ALICE, BOB, make_stack, submission_client, wait_mailbox

CAROL = "carol@remote.test"


# ---- helpers shared by test_transcript.py and test_faults.py ----

def send(stack, rcpts, subject="trace test", message_id=None, body="Hello.\r\n",
         rcpt_options=()):
    """Submits a message as alice (STARTTLS + AUTH); returns its lifecycle id
    from the 250 reply."""
    c = submission_client(stack)
    headers = f"From: {ALICE}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
    if message_id:
        headers += f"Message-ID: {message_id}\r\n"
    code, _ = c.mail(ALICE)
    assert code == 250
    for r in rcpts:
        code, reply = c.rcpt(r, list(rcpt_options))
        assert code == 250, reply
    code, reply = c.data((headers + "\r\n" + body).encode())
    c.quit()
    assert code == 250, reply
    m = re.search(rb"queued as ([0-9A-Z]{16})", reply)
    assert m, reply
    return m.group(1).decode()


def trace_json(stack, *args):
    r = stack.ctl("trace", "--json", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def wait_event(stack, lifecycle_id, kind, comp=None, count=1, timeout=30.0):
    """Polls `mailctl trace --json ID` until `count` events of this kind (and
    component) are there; returns all the message's events."""
    deadline = time.monotonic() + timeout
    events = []
    while time.monotonic() < deadline:
        r = stack.ctl("trace", "--json", lifecycle_id)
        if r.returncode == 0:
            events = [json.loads(line) for line in r.stdout.splitlines()]
            found = [e for e in events
                     if e["event"] == kind and (comp is None or e["comp"] == comp)]
            if len(found) >= count:
                return events
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event for {lifecycle_id}: {events}")


def only(events, kind, comp=None):
    found = [e for e in events if e["event"] == kind and (comp is None or e["comp"] == comp)]
    assert len(found) == 1, (kind, events)
    return found[0]


def imap_login(stack, user=BOB):
    m = imaplib.IMAP4("127.0.0.1", stack.port("imap"), timeout=15)
    m.starttls(ssl_context=stack.ssl_context())
    m.login(user, stack.passwords[user])
    return m


def pop_login(stack, user=BOB):
    p = poplib.POP3("127.0.0.1", stack.port("pop3"), timeout=15)
    p.stls(context=stack.ssl_context())
    p.user(user)
    p.pass_(stack.passwords[user])
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def full(stack_factory):
    s = make_stack(stack_factory)
    s.start("mta", "mda", "imapd", "pop3d")
    return s


# ---- one test per event kind ----

def test_received_rcpt_queued(full):
    lid = send(full, [BOB], message_id="<trace-1@example.test>")
    events = wait_event(full, lid, "queued")
    assert all(e["id"] == lid for e in events)
    received = only(events, "received")
    assert received["comp"] == "mta"
    assert received["sender"] == ALICE
    assert received["auth"] == ALICE
    assert received["proto"] == "ESMTPSA"
    assert received["tls"].startswith("TLSv1.")
    assert received["rcpts"] == "1"
    rcpt = only(events, "rcpt")
    assert rcpt["rcpt"] == BOB and rcpt["orig"] == BOB
    assert only(events, "queued")["rcpts"] == "1"
    # in order: received before queued
    kinds = [e["event"] for e in events]
    assert kinds.index("received") < kinds.index("queued")


def test_attempt_delivered_removed(full):
    lid = send(full, [BOB])
    events = wait_event(full, lid, "removed")
    attempt = only(events, "attempt")
    assert attempt["proto"] == "LMTP"
    assert attempt["hop"].startswith("unix:") and attempt["hop"].endswith("/run/lmtp.sock")
    assert attempt["status"] == "2.0.0"
    assert attempt["reply"] == f"250 2.0.0 <{BOB}> Delivered, id {lid}"
    filed = only(events, "delivered", "mda")
    assert filed["user"] == BOB and filed["folder"] == "INBOX" and filed["uid"] == "1"
    handed = only(events, "delivered", "mta")
    assert handed["rcpt"] == BOB and handed["proto"] == "LMTP"
    # the timeline names both deliveries in words
    out = full.ctl("trace", lid).stdout
    assert out.startswith(f"Message {lid}\n")
    assert "filed in the mailbox" in out
    assert "delivered to the next hop" in out
    assert "left the queue: every recipient is done" in out


def test_fetched_flags_expunged_over_imap(full):
    lid = send(full, [BOB])
    wait_event(full, lid, "delivered", "mda")
    m = imap_login(full)
    m.select("INBOX")
    typ, data = m.uid("FETCH", "1", "(BODY[])")
    assert typ == "OK"
    events = wait_event(full, lid, "fetched")
    fetched = only(events, "fetched")
    assert fetched["comp"] == "imapd" and fetched["user"] == BOB
    assert fetched["section"] == "BODY[]"
    seen = [e for e in events if e["event"] == "flags"]
    assert seen and seen[0]["flags"] == "+\\Seen"
    typ, _ = m.uid("STORE", "1", "+FLAGS", "(\\Flagged \\Deleted)")
    assert typ == "OK"
    events = wait_event(full, lid, "flags", count=2)
    changed = [e for e in events if e["event"] == "flags"][-1]
    assert "\\Flagged" in changed["flags"] and "\\Deleted" in changed["flags"]
    typ, _ = m.expunge()
    assert typ == "OK"
    events = wait_event(full, lid, "expunged")
    gone = only(events, "expunged")
    assert gone["user"] == BOB and gone["folder"] == "INBOX" and gone["proto"] == "imap"
    m.logout()


def test_retrieved_deleted_over_pop3(full):
    lid = send(full, [BOB])
    wait_event(full, lid, "delivered", "mda")
    p = pop_login(full)
    resp, lines, _ = p.retr(1)
    assert resp.startswith(b"+OK")
    p.dele(1)
    p.quit()
    events = wait_event(full, lid, "deleted")
    retrieved = only(events, "retrieved")
    assert retrieved["comp"] == "pop3d" and retrieved["user"] == BOB
    assert retrieved["command"] == "RETR"
    deleted = only(events, "deleted")
    assert deleted["user"] == BOB and deleted["proto"] == "pop3"


def test_filtered_by_sieve(full):
    script = 'require ["fileinto", "mailbox"];\nif header :contains "subject" "[list]" {\n' \
             '  fileinto :create "Lists";\n}\n'
    r = full.ctl("sieve", "put", BOB, "-", input=script)
    assert r.returncode == 0, r.stderr
    lid = send(full, [BOB], subject="[list] weekly")
    events = wait_event(full, lid, "delivered", "mda")
    filtered = only(events, "filtered")
    assert filtered["user"] == BOB and filtered["rcpt"] == BOB
    assert only(events, "delivered", "mda")["folder"] == "Lists"


def test_bounced_and_dsn_by_remote_550(stack_factory):
    remote = make_stack(stack_factory, name="remote", domain="remote.test",
                        users={CAROL: "carol-Secret-3"})
    remote.start("mta", "mda")
    a = make_stack(stack_factory, f"[routes]\nremote.test = 127.0.0.1:{remote.port('smtp')}\n")
    a.start("mta", "mda")
    lid = send(a, ["nobody@remote.test"])
    events = wait_event(a, lid, "removed")
    attempt = only(events, "attempt")
    assert attempt["proto"] == "SMTP" and attempt["status"] == "5.1.1"
    assert attempt["hop"].startswith("127.0.0.1")
    bounced = only(events, "bounced")
    assert bounced["rcpt"] == "nobody@remote.test" and bounced["status"] == "5.1.1"
    assert bounced["reply"].startswith("550 5.1.1")
    dsn = only(events, "dsn")
    assert dsn["kind"] == "bounced"
    # the bounce is a message of its own, with its own journey, back to alice
    dsn_events = wait_event(a, dsn["dsn"], "delivered", "mda")
    assert only(dsn_events, "received")["for"] == lid
    assert only(dsn_events, "delivered", "mda")["user"] == ALICE
    out = a.ctl("trace", lid).stdout
    assert "failed permanently: a bounce goes to the sender" in out


def test_deferred_delayed_then_bounced_with_time_scale(stack_factory):
    dead = free_port()
    # A day of retries in seconds: every 60 s / 60, warn after 120 s / 60,
    # give up after 300 s / 60.
    a = make_stack(stack_factory,
                   f"[routes]\ndead.test = 127.0.0.1:{dead}\n"
                   "[smtp]\nretry_schedule = 60\nmax_queue_lifetime = 300\n"
                   "delay_warning_time = 120\nqueue_time_scale = 60\n")
    a.start("mta", "mda")
    lid = send(a, ["x@dead.test"], rcpt_options=["NOTIFY=FAILURE,DELAY"])
    events = wait_event(a, lid, "deferred")
    deferred = [e for e in events if e["event"] == "deferred"][0]
    assert deferred["rcpt"] == "x@dead.test"
    assert deferred["status"].startswith("4.")
    assert deferred["attempts"] == "1"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", deferred["next_try"])
    events = wait_event(a, lid, "bounced", timeout=40)
    kinds = [e["event"] for e in events]
    assert kinds.count("deferred") >= 2
    delayed = only(events, "delayed")
    assert delayed["rcpt"] == "x@dead.test"
    assert kinds.index("delayed") < kinds.index("bounced")
    assert only(events, "bounced")["status"] == "4.4.7"
    out = a.ctl("trace", lid).stdout
    assert "deferred, will retry" in out and "delay warning sent to the sender" in out
    wait_mailbox(a, ALICE, 2, timeout=20)


# ---- naming a message ----

def test_last_and_message_id(full):
    first = send(full, [BOB], message_id="<first@example.test>")
    second = send(full, [BOB], message_id="<second@example.test>")
    wait_event(full, second, "delivered", "mda")
    wait_event(full, first, "delivered", "mda")
    events = trace_json(full, "--last")
    assert {e["id"] for e in events} == {second}
    r = full.ctl("trace", "--last")
    assert r.stdout.startswith(f"Message {second}\n")
    for name in ("<first@example.test>", "first@example.test"):
        assert {e["id"] for e in trace_json(full, name)} == {first}


def test_comp_filter(full):
    lid = send(full, [BOB])
    wait_event(full, lid, "removed")
    events = trace_json(full, "--comp", "mda", lid)
    assert events and {e["comp"] for e in events} == {"mda"}


def test_follow_prints_new_events_until_stopped(full):
    lid = send(full, [BOB])
    wait_event(full, lid, "delivered", "mda")
    proc = subprocess.Popen([full.bin + "/mailctl", "trace", "--follow", "--json", lid],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full.env())
    try:
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "received"
        m = imap_login(full)
        m.select("INBOX")
        m.uid("FETCH", "1", "(BODY[])")
        m.logout()
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "fetched" not in seen:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(json.loads(line)["event"])
        assert "fetched" in seen
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_unknown_message_and_usage(full):
    r = full.ctl("trace", "--last")
    assert r.returncode == 1
    assert r.stderr.startswith("mailctl: no events yet") or \
        r.stderr == "mailctl: no message has been received yet\n"
    send(full, [BOB])
    r = full.ctl("trace", "<nothing@example.test>")
    assert r.returncode == 1
    assert r.stderr == "mailctl: no message with id or Message-ID '<nothing@example.test>'\n"
    r = full.ctl("trace")
    assert r.returncode == 1 and r.stderr.startswith("usage: mailctl trace")
    r = full.ctl("trace", "--last", "X")
    assert r.returncode == 1
