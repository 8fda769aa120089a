"""The mta's lifecycle events as `mailctl trace --json` shows them, the lab
time scale (retry, delay warning and bounce within seconds), the mda's
exactly-once check by lifecycle id, and the lab faults seen from the queue."""
import email
import socket
import time

from test_mta_smtp import ALICE, BOB, make_stack, mailbox, wait_mailbox
from test_trace import send, trace_json, wait_event


def only(events, kind, comp=None):
    found = [e for e in events if e["event"] == kind and (comp is None or e["comp"] == comp)]
    assert len(found) == 1, (kind, comp, events)
    return found[0]


def test_trace_json_after_delivery(stack_factory):
    s = make_stack(stack_factory)
    s.start("mta", "mda")
    lid = send(s, [BOB], message_id="<life-1@example.test>")
    wait_event(s, lid, "removed")
    events = trace_json(s, lid)
    received = only(events, "received")
    assert received["comp"] == "mta"
    assert received["message_id"] == "<life-1@example.test>"
    assert received["from"] == ALICE
    assert received["to"] == BOB and received["rcpts"] == "1"
    assert received["auth"] == ALICE
    assert received["tls"].startswith("TLSv1.")
    assert received["proto"] == "ESMTPSA"
    assert received["client"].endswith("[127.0.0.1]")
    assert only(events, "queued")["rcpts"] == "1"
    attempt = only(events, "attempt")
    assert attempt["rcpt"] == BOB and attempt["proto"] == "LMTP"
    assert attempt["hop"].endswith("/run/lmtp.sock")
    assert attempt["code"] == "250" and attempt["status"] == "2.0.0"
    assert attempt["reply"] == f"250 2.0.0 <{BOB}> Delivered, id {lid}"
    handed = only(events, "delivered", "mta")
    assert handed["rcpt"] == BOB and handed["status"] == "2.0.0"
    filed = only(events, "delivered", "mda")
    assert filed["folder"] == "INBOX"
    kinds = [e["event"] for e in events if e["comp"] == "mta"]
    assert kinds.index("received") < kinds.index("queued") < kinds.index("attempt")
    # the same journey found by the Message-ID
    assert [e["event"] for e in trace_json(s, "<life-1@example.test>")] == \
        [e["event"] for e in events]


def test_time_scale_retries_warns_and_bounces_within_seconds(stack_factory):
    # Production values divided by 60: retries every 1 s, a warning after
    # 2 s, a bounce after 8 s. The route is refused by an injected fault.
    s = make_stack(stack_factory,
                   "[routes]\ndead.test = 127.0.0.1:9\n"
                   "[smtp]\nqueue_time_scale = 60\nretry_schedule = 60\n"
                   "delay_warning_time = 120\nmax_queue_lifetime = 480\n")
    s.start("mta", "mda")
    assert s.ctl("fault", "set", "route", "refuse").returncode == 0
    start = time.monotonic()
    lid = send(s, ["x@dead.test"], rcpt_options=["NOTIFY=FAILURE,DELAY"],
               message_id="<scaled@example.test>")
    events = wait_event(s, lid, "bounced", timeout=40)
    elapsed = time.monotonic() - start
    assert elapsed < 25, elapsed
    deferred = [e for e in events if e["event"] == "deferred"]
    assert len(deferred) >= 2
    assert all(e["status"] == "4.4.1" and e["next_try"] for e in deferred)
    assert "route refuse" in deferred[0]["reply"]
    attempts = [e for e in events if e["event"] == "attempt"]
    assert all(a["proto"] == "SMTP" and a["code"] == "451" for a in attempts)
    delayed = only(events, "delayed")
    bounced = only(events, "bounced")
    assert bounced["status"] == "4.4.7" and bounced["dsn_id"]
    assert delayed["dsn_id"] and delayed["dsn_id"] != bounced["dsn_id"]
    # both reports reach alice, and the bounce's own journey carries its id
    msgs = wait_mailbox(s, ALICE, 2, timeout=20)
    subjects = [email.message_from_bytes(m[0])["Subject"] for m in msgs]
    assert subjects == ["Delayed Mail (still being retried)",
                        "Undelivered Mail Returned to Sender"]
    assert {m[1] for m in msgs} == {delayed["dsn_id"], bounced["dsn_id"]}


def lmtp_deliver(stack, lifecycle_id, rcpt, body):
    """One LMTP transaction to the mda with the mta's XLIFECYCLE parameter."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(15)
    sock.connect(stack.path("run", "lmtp.sock"))
    f = sock.makefile("rb")

    def reply():
        lines = []
        while True:
            line = f.readline()
            lines.append(line)
            if not line or line[3:4] != b"-":
                return lines

    reply()
    sock.sendall(b"LHLO test\r\n")
    assert b"XLIFECYCLE" in b"".join(reply())
    sock.sendall(b"MAIL FROM:<%s> XLIFECYCLE=%s\r\nRCPT TO:<%s>\r\nDATA\r\n"
                 % (ALICE.encode(), lifecycle_id.encode(), rcpt.encode()))
    assert reply()[0].startswith(b"250")
    assert reply()[0].startswith(b"250")
    assert reply()[0].startswith(b"354")
    sock.sendall(body + b".\r\n")
    final = reply()[0]
    sock.sendall(b"QUIT\r\n")
    sock.close()
    return final


def test_mda_files_a_lifecycle_id_once(stack_factory):
    # What the mta relies on after a SIGKILL between the mda's 250 and its own
    # commit: the retry is answered 250 without a second copy.
    s = make_stack(stack_factory)
    s.start("mda")
    body = b"Subject: once\r\n\r\nonly once\r\n"
    first = lmtp_deliver(s, "0KX3F2A9Q4M7ZB1C", BOB, body)
    assert first == b"250 2.0.0 <%s> Delivered, id 0KX3F2A9Q4M7ZB1C\r\n" % BOB.encode()
    again = lmtp_deliver(s, "0KX3F2A9Q4M7ZB1C", BOB, body)
    assert again == b"250 2.0.0 <%s> Already delivered, id 0KX3F2A9Q4M7ZB1C\r\n" % BOB.encode()
    assert len(mailbox(s, BOB)) == 1
    events = trace_json(s, "0KX3F2A9Q4M7ZB1C")
    assert [e["event"] for e in events if e["comp"] == "mda"] == ["delivered", "duplicate"]
    # another id is filed as usual
    other = lmtp_deliver(s, "0KX3F2A9Q4M7ZB1D", BOB, body)
    assert other.startswith(b"250 2.0.0") and b"Already" not in other
    assert len(mailbox(s, BOB)) == 2
