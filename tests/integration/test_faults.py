"""Fault injection (issue 8, common/fault.h): `mailctl fault set|clear|list`
and each fault's effect on the real daemons, seen through replies, the
mailboxes and `mailctl trace`. Faults are off unless set, and show in
`mailctl status`."""
import smtplib
import time

import pytest

from test_mta_smtp import ALICE, BOB, make_stack, mailbox, submission_client, wait_mailbox
from test_trace import CAROL, send, wait_event

FAST_RETRY = "[smtp]\nretry_schedule = 1\n"


@pytest.fixture
def local(stack_factory):
    s = make_stack(stack_factory, FAST_RETRY)
    s.start("mta", "mda")
    return s


def fault(stack, *args):
    r = stack.ctl("fault", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def two_hosts(stack_factory):
    remote = make_stack(stack_factory, name="remote", domain="remote.test",
                        users={CAROL: "carol-Secret-3"})
    remote.start("mta", "mda")
    a = make_stack(stack_factory,
                   f"[routes]\nremote.test = 127.0.0.1:{remote.port('smtp')}\n" + FAST_RETRY)
    a.start("mta", "mda")
    return a, remote


# ---- the command ----

def test_set_list_clear(tmp_path, stack_factory):
    s = make_stack(stack_factory)
    assert fault(s, "list") == "no faults set\n"
    assert fault(s, "set", "mda", "tempfail") == "fault set: mda tempfail\n"
    assert fault(s, "set", "mda", "slow", "3") == "fault set: mda slow 3\n"
    assert fault(s, "set", "route", "refuse") == "fault set: route refuse\n"
    assert fault(s, "list") == "mda tempfail\nmda slow 3\nroute refuse\n"
    # setting again replaces, not duplicates
    fault(s, "set", "mda", "slow", "5")
    assert fault(s, "list") == "mda tempfail\nroute refuse\nmda slow 5\n"
    assert fault(s, "clear", "mda", "slow") == "faults cleared\n"
    assert fault(s, "list") == "mda tempfail\nroute refuse\n"
    fault(s, "clear", "mda")
    assert fault(s, "list") == "route refuse\n"
    status = s.ctl("status").stdout
    assert "faults   route refuse\n" in status
    fault(s, "clear")
    assert fault(s, "list") == "no faults set\n"
    assert "faults   none\n" in s.ctl("status").stdout


@pytest.mark.parametrize("args,message", [
    (["set", "mda", "explode"], "mailctl: unknown fault 'mda explode'\n"),
    (["set", "mda", "slow"], "mailctl: fault 'mda slow' needs an argument\n"),
    (["set", "mda", "tempfail", "3"], "mailctl: fault 'mda tempfail' takes no argument\n"),
    (["set", "mda", "slow", "soon"],
     "mailctl: the argument of 'mda slow' must be a number of seconds\n"),
    (["clear", "disk"], "mailctl: unknown fault 'disk'\n"),
])
def test_bad_arguments(stack_factory, args, message):
    s = make_stack(stack_factory)
    r = s.ctl("fault", *args)
    assert r.returncode == 1
    assert r.stderr == message
    r = s.ctl("fault")
    assert r.returncode == 1 and r.stderr.startswith("usage: mailctl fault set")
    r = s.ctl("fault", "--help")
    assert r.returncode == 0 and "queue disk-full" in r.stdout


# ---- each fault's effect ----

def test_mda_tempfail_defers_until_cleared(local):
    fault(local, "set", "mda", "tempfail")
    lid = send(local, [BOB])
    events = wait_event(local, lid, "deferred")
    deferred = [e for e in events if e["event"] == "deferred"][0]
    assert deferred["status"] == "4.3.0"
    assert deferred["reply"].startswith("451 4.3.0")
    assert mailbox(local, BOB) == []
    fault(local, "clear")
    events = wait_event(local, lid, "delivered", "mda", timeout=20)
    assert wait_mailbox(local, BOB, 1)[0][1] == lid


def test_mda_permfail_bounces(local):
    fault(local, "set", "mda", "permfail")
    lid = send(local, [BOB])
    events = wait_event(local, lid, "bounced")
    bounced = [e for e in events if e["event"] == "bounced"][0]
    assert bounced["status"] == "5.3.0"
    assert bounced["reply"].startswith("554 5.3.0")
    assert mailbox(local, BOB) == []


def test_mda_slow_delays_the_answer(local):
    fault(local, "set", "mda", "slow", "3")
    start = time.monotonic()
    lid = send(local, [BOB])
    wait_event(local, lid, "delivered", "mda", timeout=30)
    assert time.monotonic() - start >= 3.0
    fault(local, "clear")
    start = time.monotonic()
    lid = send(local, [BOB])
    wait_event(local, lid, "delivered", "mda", timeout=30)
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("name", ["refuse", "timeout", "drop"])
def test_route_faults_defer_then_deliver_when_cleared(stack_factory, name):
    a, remote = two_hosts(stack_factory)
    fault(a, "set", "route", name)
    lid = send(a, [CAROL])
    events = wait_event(a, lid, "deferred", timeout=30)
    deferred = [e for e in events if e["event"] == "deferred"][0]
    assert deferred["status"].startswith("4.")
    assert [e for e in events if e["event"] == "attempt"][0]["proto"] == "SMTP"
    assert mailbox(remote, CAROL) == []
    # the remote host never accepted it
    assert "event=received" not in remote_events(remote)
    fault(a, "clear")
    wait_event(a, lid, "delivered", "mta", timeout=60)
    wait_mailbox(remote, CAROL, 1)


def remote_events(remote):
    try:
        with open(remote.path("log", "events.log")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def test_queue_disk_full_refuses_data(local):
    fault(local, "set", "queue", "disk-full")
    c = submission_client(local)
    c.mail(ALICE)
    c.rcpt(BOB)
    # 452 4.3.1, to the DATA command or after the data: either way no 250
    try:
        code, reply = c.data(b"Subject: full\r\n\r\nno room\r\n")
    except smtplib.SMTPDataError as e:
        code, reply = e.smtp_code, e.smtp_error
    assert code == 452
    assert reply.startswith(b"4.3.1")
    # the session goes on, and the message is taken once the fault is cleared
    fault(local, "clear")
    c.rset()
    c.mail(ALICE)
    c.rcpt(BOB)
    code, reply = c.data(b"Subject: room again\r\n\r\nthere is room\r\n")
    assert code == 250
    c.quit()
    msgs = wait_mailbox(local, BOB, 1)
    assert b"there is room" in msgs[0][0]
    assert len(mailbox(local, BOB)) == 1
