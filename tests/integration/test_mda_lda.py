"""`mda deliver`, the one-shot LDA: delivery from standard input and its
sysexits.h exit codes (0, 65, 67, 73, 75)."""
import os

from test_mda_lmtp import mailbox, make_stack, stack  # noqa: F401 (fixture)

EX_DATAERR, EX_NOUSER, EX_CANTCREAT, EX_TEMPFAIL = 65, 67, 73, 75

MESSAGE = "From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: lda\n\nHello.\n"


def deliver(stack, *args, input=MESSAGE):
    return stack.run("mda", "deliver", *args, input=input)


def test_deliver_to_inbox(stack):
    r = deliver(stack, "-f", "alice@example.test", "bob@example.test")
    assert r.returncode == 0, r.stderr
    rows = mailbox(stack, "bob")
    assert len(rows) == 1
    folder, uid, _, lifecycle, data = rows[0]
    assert (folder, uid) == ("INBOX", 1)
    assert len(lifecycle) == 16
    # LF line ends become CRLF in the store.
    assert data == (b"Return-Path: <alice@example.test>\r\nDelivered-To: bob@example.test\r\n"
                    + MESSAGE.replace("\n", "\r\n").encode())


def test_from_line_gives_sender_and_is_dropped(stack):
    r = deliver(stack, "bob@example.test",
                input="From carol@other.test Thu Nov 26 10:00:00 2026\n" + MESSAGE)
    assert r.returncode == 0, r.stderr
    data = mailbox(stack, "bob")[0][4]
    assert data.startswith(b"Return-Path: <carol@other.test>\r\n")
    assert b"From carol" not in data


def test_folder_option_and_several_recipients(stack):
    r = deliver(stack, "-m", "Work/Reports", "bob@example.test", "alice+x@example.test")
    assert r.returncode == 0, r.stderr
    assert [row[0] for row in mailbox(stack, "bob")] == ["Work/Reports"]
    assert [row[0] for row in mailbox(stack, "alice")] == ["Work/Reports"]


def test_unknown_user_is_ex_nouser(stack):
    r = deliver(stack, "bob@example.test", "nobody@example.test")
    assert r.returncode == EX_NOUSER
    assert "nobody@example.test: user unknown" in r.stderr
    assert mailbox(stack, "bob") == []  # nothing delivered to anyone


def test_malformed_message_is_ex_dataerr(stack):
    for text in ("", "this line is not a header field\n\nbody\n", "Subject: a\0b\n\nx\n"):
        r = deliver(stack, "bob@example.test", input=text)
        assert r.returncode == EX_DATAERR, (text, r.stderr)
        assert "malformed message" in r.stderr
    assert mailbox(stack, "bob") == []


def test_over_quota_is_ex_cantcreat(stack):
    stack.ctl("user", "quota", "bob@example.test", "50", check=True)
    r = deliver(stack, "bob@example.test")
    assert r.returncode == EX_CANTCREAT
    assert "mailbox full" in r.stderr
    assert mailbox(stack, "bob") == []


def test_mailbox_failure_is_ex_tempfail(stack):
    # A directory where bob's database should be: opening the mailbox fails.
    db = stack.path("mail", "example.test", "bob.sqlite")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    os.makedirs(db)
    r = deliver(stack, "bob@example.test")
    assert r.returncode == EX_TEMPFAIL, r.stderr


def test_usage_error(stack):
    r = stack.run("mda", "deliver")
    assert r.returncode == EX_TEMPFAIL
    assert "usage: mda" in r.stderr
