"""Relay between two mta instances through [routes], retries, bounces and
delay warnings (RFC 3464 DSNs), sendmail and `mailctl queue`."""
import email
import socket
import smtplib
import subprocess
import time

from test_mta_smtp import ALICE, BOB, make_stack, mailbox, wait_mailbox, submission_client

CAROL = "carol@remote.test"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def remote_stack(stack_factory):
    b = make_stack(stack_factory, name="remote", domain="remote.test",
                   users={CAROL: "carol-Secret-3"})
    b.start("mta", "mda")
    return b


def test_relay_through_routes(stack_factory):
    b = remote_stack(stack_factory)
    a = make_stack(stack_factory, f"[routes]\nremote.test = 127.0.0.1:{b.port('smtp')}\n")
    a.start("mta", "mda")
    c = submission_client(a)
    msg = b"From: alice@example.test\r\nTo: carol@remote.test\r\nSubject: across\r\n\r\nhello carol\r\n"
    assert c.sendmail(ALICE, [CAROL, BOB], msg) == {}
    c.quit()
    body, lifecycle = wait_mailbox(b, CAROL, 1)[0]
    assert b"Subject: across" in body
    # two Received fields: ours (ESMTPSA) and the remote mta's (ESMTPS: STARTTLS was used)
    assert body.count(b"Received: ") == 2
    assert b"with ESMTPS id" in body
    wait_mailbox(a, BOB, 1)
    # nothing left in the queue
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = a.ctl("queue").stdout
        if "The queue is empty." in out:
            break
        time.sleep(0.2)
    assert "The queue is empty." in out


def test_dead_route_retried_then_bounced(stack_factory):
    dead = free_port()
    a = make_stack(stack_factory,
                   f"[routes]\ndead.test = 127.0.0.1:{dead}\n"
                   "[smtp]\nretry_schedule = 1\nmax_queue_lifetime = 4\ndelay_warning_time = 2\n")
    a.start("mta", "mda")
    c = submission_client(a)
    msg = (b"From: alice@example.test\r\nTo: x@dead.test\r\nSubject: doomed\r\n"
           b"Message-ID: <doomed-1@example.test>\r\n\r\nthis will bounce\r\n")
    c.sendmail(ALICE, ["x@dead.test"], msg, rcpt_options=["NOTIFY=FAILURE,DELAY"])
    c.quit()
    # while it is retried, the queue shows it with its attempts and last error
    deadline = time.monotonic() + 5
    listing = ""
    while time.monotonic() < deadline:
        listing = a.ctl("queue").stdout
        if "attempts 1" in listing or "attempts 2" in listing:
            break
        time.sleep(0.1)
    assert "to <x@dead.test>  queued" in listing, listing
    assert "Cannot connect to 127.0.0.1:" in listing
    # a delay warning, then the bounce, both to alice's mailbox
    msgs = wait_mailbox(a, ALICE, 2, timeout=30)
    warning = email.message_from_bytes(msgs[0][0])
    bounce = email.message_from_bytes(msgs[1][0])
    assert warning["Subject"] == "Delayed Mail (still being retried)"
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    assert bounce.get_content_type() == "multipart/report"
    assert bounce.get_param("report-type") == "delivery-status"
    parts = bounce.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    status = parts[1].as_string()
    assert "Final-Recipient: rfc822; x@dead.test" in status
    assert "Action: failed" in status
    assert "Status: 4.4.7" in status
    assert "Reporting-MTA: dns; " in status
    assert "Message-ID: <doomed-1@example.test>" in parts[2].as_string()
    assert "this will bounce" not in parts[2].as_string()
    assert "Action: delayed" in warning.get_payload()[1].as_string()
    assert bounce["Auto-Submitted"] == "auto-replied"
    # the queue is empty again: the bounce was delivered, the original removed
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "empty" not in a.ctl("queue").stdout:
        time.sleep(0.2)
    assert "The queue is empty." in a.ctl("queue").stdout
    events = open(a.path("log", "events.log")).read()
    assert "event=bounced" in events and "event=delayed" in events


def test_permanent_failure_bounces_at_once_with_full_message(stack_factory):
    b = remote_stack(stack_factory)
    a = make_stack(stack_factory, f"[routes]\nremote.test = 127.0.0.1:{b.port('smtp')}\n")
    a.start("mta", "mda")
    c = submission_client(a)
    c.sendmail(ALICE, ["nobody@remote.test"], b"Subject: to nobody\r\n\r\nfull body\r\n",
               mail_options=["RET=FULL", "ENVID=env-42"])
    c.quit()
    bounce = email.message_from_bytes(wait_mailbox(a, ALICE, 1, timeout=20)[0][0])
    parts = bounce.get_payload()
    assert parts[2].get_content_type() == "message/rfc822"
    status = parts[1].as_string()
    assert "Original-Envelope-Id: env-42" in status
    assert "Status: 5.1.1" in status
    assert "Remote-MTA: dns; 127.0.0.1" in status
    assert "Diagnostic-Code: smtp; 550 5.1.1" in status
    assert "full body" in parts[2].as_string()


def test_notify_never_and_null_sender_get_no_bounce(stack_factory):
    b = remote_stack(stack_factory)
    a = make_stack(stack_factory, f"[routes]\nremote.test = 127.0.0.1:{b.port('smtp')}\n"
                   "[smtp]\ntrusted_networks = 127.0.0.1/32\n")
    a.start("mta", "mda")
    c = smtplib.SMTP("127.0.0.1", a.port("smtp"), timeout=15)
    c.sendmail(ALICE, ["nobody@remote.test"], b"Subject: never\r\n\r\nx\r\n",
               rcpt_options=["NOTIFY=NEVER"])
    c.sendmail("", ["nobody@remote.test"], b"Subject: null sender\r\n\r\nx\r\n")
    c.sendmail(ALICE, [BOB], b"Subject: marker\r\n\r\nx\r\n")
    c.quit()
    wait_mailbox(a, BOB, 1)
    time.sleep(2)
    assert mailbox(a, ALICE) == []


def test_success_dsn_on_local_delivery(stack_factory):
    a = make_stack(stack_factory)
    a.start("mta", "mda")
    c = submission_client(a)
    c.sendmail(ALICE, [BOB], b"Subject: tell me\r\n\r\nx\r\n", rcpt_options=["NOTIFY=SUCCESS"])
    c.quit()
    wait_mailbox(a, BOB, 1)
    report = email.message_from_bytes(wait_mailbox(a, ALICE, 1)[0][0])
    assert report["Subject"] == "Successful Mail Delivery Report"
    assert "Action: delivered" in report.get_payload()[1].as_string()


def test_queue_hold_release_delete(stack_factory):
    dead = free_port()
    a = make_stack(stack_factory, f"[routes]\ndead.test = 127.0.0.1:{dead}\n")
    a.start("mta", "mda")
    c = submission_client(a)
    c.sendmail(ALICE, ["x@dead.test"], b"Subject: held\r\n\r\nx\r\n")
    c.quit()
    out = a.ctl("queue").stdout
    qid = out.split()[0]
    assert a.ctl("queue", "hold", qid).returncode == 0
    assert "HELD" in a.ctl("queue").stdout
    assert a.ctl("queue", "release", qid).returncode == 0
    assert a.ctl("queue", "flush", qid).returncode == 0
    assert a.ctl("queue", "delete", qid).returncode == 0
    assert "The queue is empty." in a.ctl("queue").stdout
    r = a.ctl("queue", "delete", qid)
    assert r.returncode == 1 and "no queued message" in r.stderr
    assert a.ctl("queue", "bogus").returncode == 2


def test_sendmail_command(stack_factory):
    a = make_stack(stack_factory)
    a.start("mta", "mda")
    sendmail = a.bin + "/sendmail"
    msg = ("From: Alice <alice@example.test>\nTo: bob@example.test\nBcc: alice@example.test\n"
           "Subject: from cron\n\nline one\n.\nnot cut with -i\n")
    r = subprocess.run([sendmail, "-t", "-i", "-f", ALICE], input=msg, text=True,
                       capture_output=True, env=a.env(), timeout=30)
    assert r.returncode == 0, r.stderr
    body = wait_mailbox(a, BOB, 1)[0][0]
    assert b"Subject: from cron" in body and b"not cut with -i" in body
    assert b"Bcc:" not in body
    assert b"with ESMTP id" in body and b"(local submission)" in body
    assert b"Bcc:" not in wait_mailbox(a, ALICE, 1)[0][0]
    # recipients as arguments, "." ends the message without -i, -F adds From
    r = subprocess.run([sendmail, "-f", ALICE, "-F", "Alice Liddell", BOB],
                       input="Subject: args\n\nbefore\n.\nafter\n", text=True,
                       capture_output=True, env=a.env(), timeout=30)
    assert r.returncode == 0, r.stderr
    body = wait_mailbox(a, BOB, 2)[1][0]
    assert b"before" in body and b"after" not in body
    assert b"From: Alice Liddell <alice@example.test>" in body
    # exit codes: unknown local user (EX_NOUSER), no recipients (EX_USAGE), mta down (EX_TEMPFAIL)
    r = subprocess.run([sendmail, "nobody@example.test"], input="Subject: x\n\nx\n", text=True,
                       capture_output=True, env=a.env(), timeout=30)
    assert r.returncode == 67 and "550 5.1.1" in r.stderr
    r = subprocess.run([sendmail], input="x\n", text=True, capture_output=True, env=a.env(),
                       timeout=30)
    assert r.returncode == 64
    a.kill("mta")
    r = subprocess.run([sendmail, BOB], input="Subject: x\n\nx\n", text=True,
                       capture_output=True, env=a.env(), timeout=30)
    assert r.returncode == 75
