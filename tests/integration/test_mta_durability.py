"""Durability: a load of messages while the mta is killed with SIGKILL and
restarted; every message that got 250 ends up in the mailbox exactly once."""
import collections
import re
import smtplib
import threading
import time

from test_mta_smtp import BOB, make_stack, mailbox

THREADS = 4
PER_THREAD = 50
KILLS = 3


def test_sigkill_loses_nothing_acknowledged(stack_factory):
    s = make_stack(stack_factory, "[smtp]\nretry_schedule = 1\n")
    s.start("mta", "mda")
    acked = set()
    lock = threading.Lock()
    stop = time.monotonic() + 120

    def sender(n):
        i = 0
        while i < PER_THREAD and time.monotonic() < stop:
            try:
                c = smtplib.SMTP("127.0.0.1", s.port("smtp"), timeout=10)
                while i < PER_THREAD:
                    mid = f"<dur-{n}-{i}@test>"
                    msg = f"Message-ID: {mid}\r\nSubject: load {n} {i}\r\n\r\nbody\r\n".encode()
                    c.sendmail("load@remote.test", [BOB], msg)
                    with lock:
                        acked.add(mid)
                    i += 1
                c.quit()
            except (OSError, smtplib.SMTPException):
                # killed mid-conversation: this message has no 250; try it again
                # under a new Message-ID so that counts stay unambiguous
                i += 1
                time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for _ in range(KILLS):
        time.sleep(0.7)
        s.kill("mta")
        time.sleep(0.2)
        s.start("mta")
    for t in threads:
        t.join(timeout=150)
    assert acked, "no message was accepted"
    deadline = time.monotonic() + 60
    counts = collections.Counter()
    while time.monotonic() < deadline:
        counts = collections.Counter()
        for body, _ in mailbox(s, BOB):
            m = re.search(rb"Message-ID: (<[^>]+>)", body)
            if m:
                counts[m.group(1).decode()] += 1
        if all(counts[mid] >= 1 for mid in acked):
            break
        time.sleep(0.3)
    missing = [mid for mid in acked if counts[mid] == 0]
    twice = [mid for mid in acked if counts[mid] > 1]
    assert not missing, f"{len(missing)} acknowledged messages lost: {missing[:5]}"
    assert not twice, f"{len(twice)} delivered more than once: {twice[:5]}"
