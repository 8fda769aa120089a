"""`mailctl import` / `mailctl export`: mboxrd and Maildir, flags and internal
dates kept, malformed mbox entries reported with their line and skipped, and
round trips that keep every message byte for byte."""
import calendar
import os
import sqlite3
import time

from test_mda_lmtp import DOMAIN, make_stack, stack  # noqa: F401 (fixture)

SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = 1, 2, 4, 8, 16

MBOX = (
    "junk before the first From line\n"
    "From alice@example.test Thu Nov 26 10:00:00 2026\n"
    "From: Alice <alice@example.test>\n"
    "Subject: one\n"
    "Status: RO\n"
    "X-Status: AF\n"
    "\n"
    "A body line.\n"
    ">From the start of a line (quoted once)\n"
    ">>From quoted twice\n"
    "\n"
    "From carol@other.test Fri Nov 27 11:30:05 2026\n"
    "this entry has no header at all\n"
    "\n"
    "From bob@example.test Sat Nov 28 23:59:59 2026\n"
    "From: Bob <bob@example.test>\n"
    "Subject: two\n"
    "Status: O\n"
    "\n"
    "Second body.\n"
    "\n"
    "From MAILER-DAEMON Sun Nov  1 08:05:09 2026\n"
    "Subject: three, header only\n"
)


def rows(stack, user, folder):
    path = stack.path("mail", DOMAIN, f"{user}.sqlite")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [(r[0], r[1], bytes(r[2])) for r in db.execute(
            "SELECT m.flags, m.internal_date, b.data FROM messages m"
            " JOIN folders f ON f.id = m.folder_id JOIN bodies b ON b.id = m.body_id"
            " WHERE f.name = ? ORDER BY m.uid", (folder,))]
    finally:
        db.close()


def utc(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def test_mbox_import_flags_dates_and_skipped_entries(stack):
    path = stack.path("in.mbox")
    with open(path, "w") as f:
        f.write(MBOX)
    r = stack.ctl("import", "bob@example.test", "--folder", "Old", path)
    assert r.returncode == 1  # something was skipped, and said so
    assert f"{path}:1: text before the first From line skipped" in r.stderr
    assert f"{path}:12: entry 2 skipped: no valid header section" in r.stderr
    assert "imported 3 messages into Old, 2 skipped" in r.stdout
    got = rows(stack, "bob", "Old")
    assert [(g[0], g[1]) for g in got] == [
        (SEEN | ANSWERED | FLAGGED, utc("2026-11-26 10:00:00")),
        (0, utc("2026-11-28 23:59:59")),
        (0, utc("2026-11-01 08:05:09"))]
    assert got[0][2] == (b"From: Alice <alice@example.test>\r\nSubject: one\r\n\r\n"
                         b"A body line.\r\nFrom the start of a line (quoted once)\r\n"
                         b">From quoted twice\r\n")
    assert got[1][2] == b"From: Bob <bob@example.test>\r\nSubject: two\r\n\r\nSecond body.\r\n"
    assert got[2][2] == b"Subject: three, header only\r\n"


def test_mbox_and_maildir_round_trips_are_exact(stack):
    path = stack.path("in.mbox")
    with open(path, "w") as f:
        f.write(MBOX)
    stack.ctl("import", "bob@example.test", "--folder", "Old", path)
    original = rows(stack, "bob", "Old")
    assert len(original) == 3

    out = stack.path("out.mbox")
    r = stack.ctl("export", "bob@example.test", "--folder", "Old", "--mbox", out)
    assert r.returncode == 0, r.stderr
    text = open(out).read()
    assert text.startswith("From alice@example.test Thu Nov 26 10:00:00 2026\n")
    assert "Status: RO\nX-Status: AF\n" in text
    assert "\n>From the start of a line (quoted once)\n>>From quoted twice\n" in text
    r = stack.ctl("import", "bob@example.test", "--folder", "Again", out)
    assert r.returncode == 0, r.stderr
    assert rows(stack, "bob", "Again") == original

    maildir = stack.path("Maildir")
    r = stack.ctl("export", "bob@example.test", "--folder", "Old", "--maildir", maildir)
    assert r.returncode == 0, r.stderr
    names = sorted(os.listdir(os.path.join(maildir, "cur")))
    assert len(names) == 3 and os.listdir(os.path.join(maildir, "tmp")) == []
    assert any(n.endswith(":2,FRS") for n in names)
    r = stack.ctl("import", "alice@example.test", "--folder", "FromMaildir", maildir)
    assert r.returncode == 0, r.stderr
    assert sorted(rows(stack, "alice", "FromMaildir"), key=lambda g: g[1]) == \
        sorted(original, key=lambda g: g[1])


def test_maildir_import_flags_and_mtime(stack):
    maildir = stack.path("md")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub))
    files = [("cur/1000.a.host:2,DS", "Subject: draft\n\nx\n", 1000, DRAFT | SEEN),
             ("cur/2000.b.host:2,T", "Subject: gone\n\ny\n", 2000, DELETED),
             ("new/3000.c.host", "Subject: new\n\nz\n", 3000, 0)]
    for name, body, mtime, _ in files:
        p = os.path.join(maildir, name)
        with open(p, "w") as f:
            f.write(body)
        os.utime(p, (mtime, mtime))
    r = stack.ctl("import", "bob@example.test", maildir)
    assert r.returncode == 0, r.stderr
    got = rows(stack, "bob", "INBOX")
    assert [(g[0], g[1]) for g in got] == [(f[3], f[2]) for f in files]
    assert got[2][2] == b"Subject: new\r\n\r\nz\r\n"


def test_usage_and_unknown_user(stack):
    assert stack.ctl("import", "bob@example.test").returncode == 2
    assert stack.ctl("export", "bob@example.test", "--mbox").returncode == 2
    r = stack.ctl("export", "nobody@example.test", "--mbox", stack.path("x"))
    assert r.returncode == 1 and "no such user" in r.stderr
