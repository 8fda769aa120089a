"""Sieve rules end to end: `mailctl sieve put|get|del` (checked scripts), and
each action at delivery through LMTP: keep, fileinto (:create), discard,
redirect (re-submitted to the mta's submission socket), stop, vacation with
its once-per-period rule and its safeguards, and a script that fails at run
time delivering to INBOX."""
import os

from test_mda_lmtp import (FakeSubmission, lmtp_send, mailbox, make_stack, message,  # noqa: F401
                           stack)

REQUIRE = 'require ["fileinto", "envelope", "subaddress", "vacation", "mailbox"];\n'


def put_script(stack, user, text):
    path = stack.path(f"{user.split('@')[0]}.sieve")
    with open(path, "w") as f:
        f.write(text)
    return stack.ctl("sieve", "put", user, path)


def test_put_get_del(stack):
    r = put_script(stack, "bob@example.test", REQUIRE + "keep;\n")
    assert r.returncode == 0, r.stderr
    assert "stored the script of bob@example.test" in r.stdout
    assert stack.ctl("sieve", "get", "bob@example.test").stdout == REQUIRE + "keep;\n"
    assert stack.ctl("sieve", "del", "bob@example.test").returncode == 0
    r = stack.ctl("sieve", "get", "bob@example.test")
    assert r.returncode == 1 and "has no script" in r.stderr


def test_bad_scripts_refused_with_line_and_column(stack):
    r = put_script(stack, "bob@example.test", "keep;\nif header :contains \"Subject\" {\n  keep;\n}\n")
    assert r.returncode == 1
    assert r.stderr.endswith("line 2, column 4: header: expected 2 arguments\n"), r.stderr
    r = put_script(stack, "bob@example.test", 'require "imap4flags";\nkeep;\n')
    assert r.returncode == 1
    assert 'line 1, column 9: unsupported extension "imap4flags"' in r.stderr
    r = put_script(stack, "bob@example.test", 'keep;\n  fileinto "Lists";\n')
    assert r.returncode == 1
    assert 'line 2, column 3: fileinto needs require "fileinto"' in r.stderr
    r = put_script(stack, "bob@example.test", "if true { keep;\n")
    assert "line 2, column 1: missing '}'" in r.stderr
    assert stack.ctl("sieve", "get", "bob@example.test").returncode == 1  # nothing stored
    r = put_script(stack, "nobody@example.test", "keep;\n")
    assert r.returncode == 1 and "no such user" in r.stderr


def test_fileinto_by_header_and_detail(stack):
    put_script(stack, "bob@example.test", REQUIRE +
               'if header :contains "List-Id" "dev.example.test" { fileinto "Lists/Dev"; stop; }\n'
               'if envelope :detail "to" "shop" { fileinto :create "Shopping"; }\n'
               'if address :domain :is "from" "spam.test" { fileinto "Junk"; }\n')
    stack.start("mda")
    lmtp_send(stack, "a@other.test", ["bob@example.test"],
              message("list", extra="List-Id: <dev.example.test>\r\n"))
    lmtp_send(stack, "a@other.test", ["bob+shop@example.test"], message("order"))
    lmtp_send(stack, "a@other.test", ["bob@example.test"],
              message("plain").replace(b"alice@example.test", b"x@spam.test"))
    lmtp_send(stack, "a@other.test", ["bob@example.test"], message("other"))
    rows = mailbox(stack, "bob")
    assert sorted((r[0], r[1]) for r in rows) == [
        ("INBOX", 1), ("Junk", 1), ("Lists/Dev", 1), ("Shopping", 1)]
    log = stack.log_text("mda")
    assert "event=filtered" in log and 'rule="line 2 fileinto Lists/Dev"' in log
    assert "folder=Lists/Dev uid=1" in log


def test_keep_discard_and_size(stack):
    put_script(stack, "bob@example.test", REQUIRE +
               'if size :over 2K { discard; stop; }\n'
               'if exists "X-Copy" { keep; fileinto "Copies"; }\n')
    stack.start("mda")
    _, data = lmtp_send(stack, "a@other.test", ["bob@example.test"],
                        message("big", body="x" * 3000 + "\r\n"))
    assert data[0][0] == 250  # discarded, but accepted
    lmtp_send(stack, "a@other.test", ["bob@example.test"],
              message("copied", extra="X-Copy: yes\r\n"))
    rows = mailbox(stack, "bob")
    assert sorted(r[0] for r in rows) == ["Copies", "INBOX"]
    assert "event=discarded" in stack.log_text("mda")


def test_runtime_failure_delivers_to_inbox(stack):
    put_script(stack, "bob@example.test", REQUIRE + 'fileinto "bad//name";\n')
    stack.start("mda")
    _, data = lmtp_send(stack, "a@other.test", ["bob@example.test"], message("fallback"))
    assert data[0][0] == 250
    assert [r[0] for r in mailbox(stack, "bob")] == ["INBOX"]
    assert "sieve script failed, delivering to INBOX" in stack.log_text("mda")


def test_redirect(stack):
    put_script(stack, "bob@example.test", REQUIRE +
               'if header :is "Subject" "fwd" { redirect "carol@other.test"; }\n'
               'if header :is "Subject" "fwd and keep" { redirect "carol@other.test"; keep; }\n')
    submit = FakeSubmission(stack)
    try:
        stack.start("mda")
        _, data = lmtp_send(stack, "alice@example.test", ["bob@example.test"], message("fwd"))
        assert data[0][0] == 250
        _, data = lmtp_send(stack, "alice@example.test", ["bob@example.test"],
                            message("fwd and keep"))
        assert data[0][0] == 250
        got = submit.wait(2)
    finally:
        submit.close()
    assert len(got) == 2
    mail_from, rcpts, body = got[0]
    assert mail_from == "alice@example.test" and rcpts == ["carol@other.test"]
    assert body == b"Delivered-To: bob@example.test\r\n" + message("fwd")
    assert [r[0] for r in mailbox(stack, "bob")] == ["INBOX"]  # only "fwd and keep"
    assert "event=redirected" in stack.log_text("mda")


def test_redirect_failure_keeps_a_copy(stack):
    put_script(stack, "bob@example.test", 'redirect "carol@other.test";\n')
    stack.start("mda")  # no submission socket: the redirect cannot go out
    _, data = lmtp_send(stack, "alice@example.test", ["bob@example.test"], message("lost?"))
    assert data[0][0] == 250
    assert [r[0] for r in mailbox(stack, "bob")] == ["INBOX"]
    assert "redirect failed, keeping a copy" in stack.log_text("mda")


def test_redirect_loop_is_refused(stack):
    put_script(stack, "bob@example.test", 'redirect "carol@other.test";\n')
    submit = FakeSubmission(stack)
    try:
        stack.start("mda")
        lmtp_send(stack, "alice@example.test", ["bob@example.test"],
                  b"Delivered-To: bob@example.test\r\n" + message("looped"))
    finally:
        submit.close()
    assert submit.messages == []
    assert [r[0] for r in mailbox(stack, "bob")] == ["INBOX"]


def test_vacation_once_per_period_and_safeguards(stack):
    put_script(stack, "bob@example.test", REQUIRE +
               'vacation :days 7 :addresses ["robert@example.test"] "I am away until Monday.";\n')
    submit = FakeSubmission(stack)
    try:
        stack.start("mda")
        send = lambda sender, msg: lmtp_send(stack, sender, ["bob@example.test"], msg)
        send("carol@other.test", message("hello"))
        send("carol@other.test", message("hello again"))          # same sender: no reply
        send("dave@other.test", message("from dave"))              # another sender: reply
        send("", message("bounce"))                                # null sender: never
        send("list@other.test", message("list", extra="List-Id: <l.other.test>\r\n"))
        send("news@other.test", message("bulk", extra="Precedence: bulk\r\n"))
        send("bot@other.test", message("auto", extra="Auto-Submitted: auto-replied\r\n"))
        send("owner-x@other.test", message("owner"))
        send("erin@other.test", message("bcc").replace(b"To: bob@example.test",
                                                       b"To: someone@other.test"))
        send("frank@other.test", message("alias").replace(b"To: bob@example.test",
                                                          b"To: robert@example.test"))
        got = submit.wait(3)
        import time
        time.sleep(0.5)
        got = list(submit.messages)
    finally:
        submit.close()
    assert [(m[0], m[1]) for m in got] == [("", ["carol@other.test"]), ("", ["dave@other.test"]),
                                           ("", ["frank@other.test"])]
    reply = got[0][2].decode()
    assert "From: bob@example.test\r\n" in reply
    assert "To: carol@other.test\r\n" in reply
    assert "Subject: Auto: hello\r\n" in reply
    assert "Auto-Submitted: auto-replied (vacation)\r\n" in reply
    assert "In-Reply-To: <hello@test>\r\n" in reply
    assert reply.endswith("\r\n\r\nI am away until Monday.\r\n")
    # Every message was still delivered (vacation does not cancel the keep).
    assert len(mailbox(stack, "bob")) == 10
    log = stack.log_text("mda")
    assert 'reason="already answered in this period"' in log
    assert 'reason="null sender"' in log and 'reason="mailing list"' in log
    assert 'reason="bulk mail"' in log and "reason=Auto-Submitted" in log
    assert 'reason="user not in To/Cc"' in log


def test_vacation_subject_and_from(stack):
    put_script(stack, "bob@example.test", REQUIRE +
               'vacation :subject "Out of office" :from "bob.b@example.test" text:\n'
               'Back soon.\n..\n.\n;\n')
    submit = FakeSubmission(stack)
    try:
        stack.start("mda")
        lmtp_send(stack, "carol@other.test", ["bob@example.test"], message("hi"))
        got = submit.wait(1)
    finally:
        submit.close()
    reply = got[0][2].decode()
    assert "Subject: Out of office\r\n" in reply and "From: bob.b@example.test\r\n" in reply
    assert reply.endswith("\r\n\r\nBack soon.\r\n.\r\n")
