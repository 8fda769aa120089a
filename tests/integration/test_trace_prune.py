"""Lifecycle events are pruned after log.event_retention, while the daemons
keep writing and `mailctl trace` keeps reading across the files."""
import json
import os
import re
import smtplib
import time


def send(stack, subject):
    with smtplib.SMTP("127.0.0.1", stack.port("smtp"), timeout=30) as s:
        s.ehlo("client.test")
        code, reply = s.docmd("MAIL FROM:<carol@outside.test>")
        assert code == 250
        assert s.docmd("RCPT TO:<bob@example.test>")[0] == 250
        code, reply = s.data(f"From: carol@outside.test\r\nTo: bob@example.test\r\n"
                             f"Subject: {subject}\r\nMessage-ID: <{subject}@outside.test>\r\n"
                             f"\r\nHello.\r\n".encode())
        assert code == 250
        return re.search(rb"queued as ([0-9A-Z]{16})", reply).group(1).decode()


def wait_delivered(stack, lifecycle_id, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = stack.ctl("trace", "--dir", stack.dir, "--json", lifecycle_id)
        events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        if any(e["event"] == "delivered" and e.get("comp") == "mda" for e in events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"{lifecycle_id} was not delivered")


def test_prune_drops_old_events_and_trace_reads_on(stack):
    os.makedirs(stack.path("log"), exist_ok=True)
    old = ("ts=2020-01-02T03:04:05.000Z comp=mta id=0000000000OLD000 event=received "
           "from=old@outside.test\n")
    with open(stack.path("log", "events.log"), "w") as f:
        f.write(old)
    stack.start("mda", "mta")
    first = send(stack, "before-prune")
    wait_delivered(stack, first)
    assert stack.ctl("trace", "--dir", stack.dir, "0000000000OLD000").returncode == 0

    r = stack.ctl("trace", "--dir", stack.dir, "--prune")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "pruned 1 events older than 2592000 seconds\n"
    archived = open(stack.path("log", "events.log.1")).read()
    assert "0000000000OLD000" not in archived and first in archived
    r = stack.ctl("trace", "--dir", stack.dir, "0000000000OLD000")
    assert r.returncode == 1
    assert r.stderr == "mailctl: no events for 0000000000OLD000\n"

    # The daemons moved to a new events.log; trace reads the archive and it.
    second = send(stack, "after-prune")
    events = wait_delivered(stack, second)
    assert [e["event"] for e in events][:1] == ["received"]
    assert second in open(stack.path("log", "events.log")).read()
    r = stack.ctl("trace", "--dir", stack.dir, "<before-prune@outside.test>")
    assert r.returncode == 0 and r.stdout.startswith(f"Message {first}\n")

    # Nothing old left: a second prune moves nothing and drops nothing.
    r = stack.ctl("trace", "--dir", stack.dir, "--prune")
    assert r.stdout == "pruned 0 events older than 2592000 seconds\n"
    assert second in open(stack.path("log", "events.log")).read()


def test_transcript_prune_drops_old_lines_and_daemons_write_on(stack):
    os.makedirs(stack.path("log"), exist_ok=True)
    with open(stack.path("log", "transcript.log"), "w") as f:
        f.write("ts=2020-01-02T03:04:05.000Z comp=mta proto=smtp conn=1 dir=C tls=no "
                "line=\"EHLO long.ago\"\n")
    stack.start("mda", "mta")
    send(stack, "transcribed")
    r = stack.ctl("transcript", "--dir", stack.dir, "--prune")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "pruned 1 transcript lines older than 604800 seconds\n"
    archived = open(stack.path("log", "transcript.log.1")).read()
    assert "long.ago" not in archived and "ehlo client.test" in archived.lower()
    send(stack, "after-transcript-prune")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = open(stack.path("log", "transcript.log")).read()
        if "mail from" in text.lower():
            break
        time.sleep(0.2)
    assert "mail from:<carol@outside.test>" in text.lower()
