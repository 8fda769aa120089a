"""The mua reading over POP3 (pop3d): scripting mode and the screen.

The account comes from a mua.conf written here (read = pop3, STLS on the
POP3 port or implicit TLS on POP3S), sending over submission as usual. The
UIDL-keyed header cache lives in XDG_CACHE_HOME under the test's directory.
"""
import os
import poplib
import subprocess
import time

from test_mua import (ALICE, BOB, EX_DATAERR, Screen, imap_login, mail, screens,
                      wait_messages)  # noqa: F401


def pop3_conf(stack, tmp_path, user, tls="starttls", poll=None):
    port = stack.port("pop3s" if tls == "implicit" else "pop3")
    conf = tmp_path / f"{user.split('@')[0]}-pop3.conf"
    text = (f"[account pop]\naddress = {user}\nread = pop3\nread_host = 127.0.0.1\n"
            f"read_port = {port}\nread_tls = {tls}\n"
            f"send_host = 127.0.0.1\nsend_port = {stack.port('submission')}\n"
            f"send_tls = starttls\ntls_ca_file = {stack.path('tls', 'cert.pem')}\n"
            f"password_command = echo {stack.passwords[user]}\n")
    if poll is not None:
        text += f"poll_interval = {poll}\n"
    conf.write_text(text)
    return conf


def mua_conf(stack, tmp_path, conf, *args, input=None):
    env = stack.env()
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env.pop("EDITOR", None)
    return subprocess.run([os.path.join(stack.bin, "mua"), "--config", str(conf), *args],
                          input=input, capture_output=True, timeout=60, env=env)


def send(stack, subject, body="Hello.\n", to=BOB):
    env = stack.env()
    r = subprocess.run([os.path.join(stack.bin, "mua"), "--dir", stack.dir, "--account", ALICE,
                        "send", "--to", to, "--subject", subject, "--no-save"],
                       input=body.encode(), capture_output=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr


def pop3_count(stack, user):
    p = poplib.POP3("127.0.0.1", stack.port("pop3"))
    p.stls(stack.ssl_context())
    p.user(user)
    p.pass_(stack.passwords[user])
    n = p.stat()[0]
    p.quit()
    return n


def test_pop3_list_and_read_with_stls_and_implicit_tls(mail, tmp_path):
    send(mail, "First over POP3", "One.\n")
    send(mail, "Second über POP3", "Zwei.\n")
    wait_messages(mail, BOB, "INBOX", 2)
    conf = pop3_conf(mail, tmp_path, BOB)
    r = mua_conf(mail, tmp_path, conf, "--verbose", "list")
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.decode().strip().splitlines()]
    assert [(f[0], f[2], f[3], f[4]) for f in rows] == [
        ("1", ALICE, "First over POP3", "N"), ("2", ALICE, "Second über POP3", "N")]
    err = r.stderr.decode()
    # The conversation: STLS, then login with the password masked, UIDL, TOP.
    assert "STLS" in err and "UIDL" in err and "TOP 1 0" in err
    assert mail.passwords[BOB] not in err
    # The headers are cached by UIDL: a second listing reads no TOP.
    r = mua_conf(mail, tmp_path, conf, "--verbose", "list")
    assert r.returncode == 0, r.stderr
    assert "TOP 1 0" not in r.stderr.decode()
    # read: RETR, decoded; then the message counts as read.
    r = mua_conf(mail, tmp_path, conf, "--verbose", "read", "2")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "Subject: Second über POP3" in text and "Zwei." in text
    assert "RETR 2" in r.stderr.decode()
    r = mua_conf(mail, tmp_path, conf, "list")
    flags = [line.split("\t")[4] for line in r.stdout.decode().strip().splitlines()]
    assert flags == ["N", "-"]
    r = mua_conf(mail, tmp_path, conf, "read", "3")
    assert r.returncode == EX_DATAERR
    assert b"no message 3 in INBOX (2 messages)" in r.stderr
    r = mua_conf(mail, tmp_path, conf, "list", "--folder", "Sent")
    assert r.returncode == EX_DATAERR
    # Implicit TLS on the POP3S port.
    conf = pop3_conf(mail, tmp_path, BOB, tls="implicit")
    r = mua_conf(mail, tmp_path, conf, "--verbose", "list")
    assert r.returncode == 0, r.stderr
    assert "First over POP3" in r.stdout.decode()
    assert "implicit TLS" in r.stderr.decode()
    # A refused login is a clear message.
    bad = tmp_path / "bad.conf"
    bad.write_text(conf.read_text().replace(mail.passwords[BOB], "wrong"))
    r = mua_conf(mail, tmp_path, bad, "list")
    assert r.returncode == 69
    assert r.stderr.startswith(b"mua: POP3 login refused: ")


def test_pop3_screen_reads_polls_and_deletes(mail, tmp_path, screens):
    send(mail, "Old news", "Read me over POP3.\n")
    wait_messages(mail, BOB, "INBOX", 1)
    conf = pop3_conf(mail, tmp_path, BOB, poll=2)
    bob = Screen(mail, tmp_path, BOB, config=conf)
    screens.append(bob)
    screen = bob.wait("Old news")
    assert "-- online" in screen
    bob.keys("Enter")
    screen = bob.wait("Read me over POP3.")
    assert "Subject: Old news" in screen
    bob.keys("q")
    # New mail appears by itself (polling) with a notice.
    send(mail, "Fresh mail")
    screen = bob.wait("Fresh mail", timeout=30)
    bob.wait("New mail in INBOX.")
    # G polls at once.
    send(mail, "Third one")
    bob.keys("G")
    bob.wait("Third one", timeout=20)
    # d marks, $ deletes (DELE, then QUIT commits it).
    bob.keys("=")
    bob.keys("d")
    bob.wait("Del:1")
    bob.keys("$")
    bob.wait("Expunge deleted messages?")
    bob.keys("y")
    screen = bob.wait("1 message deleted.", timeout=20)
    assert "Old news" not in screen and "Fresh mail" in screen and "Third one" in screen
    # The maildrop is locked while the mua's POP3 session is open: count over IMAP.
    m = imap_login(mail, BOB)
    typ, data = m.select("INBOX", readonly=True)
    m.logout()
    assert int(data[0]) == 2
    bob.quit()
    assert pop3_count(mail, BOB) == 2
