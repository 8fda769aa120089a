"""The mua's screen under tmux, one behaviour per test (issue 7's list):
composing and sending, new mail without a key press, opening and replying,
threads, saving an attachment, delete and expunge, resizing (80x24 and
132x43 layouts checked from capture-pane), a server stopped mid-session,
wide characters, the navigation keys under two TERMs, pager search, the help
screen, the transcript pane, folders in modified UTF-7, UIDVALIDITY, and a
certificate that does not verify.

Messages that only need to be there are put in place with IMAP APPEND (fast,
no MTA round trip); the ones the test is about go through the real path.
"""
import datetime
import email
import email.policy
import email.utils
import imaplib
import os
import time
import unicodedata

from test_mua import (ALICE, BOB, Screen, cert_fingerprint, fetch_raw, imap_login, mail,  # noqa: F401
                      mua, screens, wait_messages)


def append(stack, user, subject, body="Text.\n", folder="INBOX", sender=ALICE, headers="",
           date="Mon, 01 Jan 2024 10:00:00 +0000", msgid=None):
    msgid = msgid or f"<{abs(hash((subject, time.monotonic())))}@example.test>"
    raw = (f"From: {sender}\r\nTo: {user}\r\nSubject: {subject}\r\nDate: {date}\r\n"
           f"Message-ID: {msgid}\r\n{headers}MIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           f"\r\n{body}").replace("\n", "\r\n").replace("\r\r\n", "\r\n")
    m = imap_login(stack, user)
    typ, _ = m.append(f'"{folder}"', None, None, raw.encode())
    m.logout()
    assert typ == "OK"
    return msgid


def width(text):
    """Terminal columns of a string (East Asian wide and emoji count two)."""
    cols = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        cols += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return cols


def check_layout(screen, cols, rows, account):
    lines = screen.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    assert len(lines) == rows, f"{len(lines)} lines, want {rows}:\n{screen}"
    for line in lines:
        assert width(line) <= cols, f"line wider than {cols}: {line!r}"
    assert lines[0].startswith("q:Quit"), lines[0]
    assert lines[rows - 2].startswith(f"-*- {account}: INBOX"), lines[rows - 2]
    return lines


def test_alice_composes_and_sends_to_bob(mail, tmp_path, screens):
    alice = Screen(mail, tmp_path, ALICE, body="Shall we have lunch on Friday?")
    screens.append(alice)
    alice.wait("-- online")
    alice.keys("m")
    alice.wait("\nTo:")
    alice.type("bo")
    alice.keys("Tab")  # completion from the addresses seen: none yet, so a beep
    alice.keys("C-u")
    alice.type("not an address")
    alice.keys("Enter")
    alice.wait("Bad address")
    alice.keys("C-u")
    alice.type(BOB)
    alice.keys("Enter")
    alice.wait("\nSubject:")
    alice.type("Lunch on Friday")
    alice.keys("Enter")
    screen = alice.wait("y:Send")
    assert "Shall we have lunch on Friday?" in screen and "To: bob@example.test" in screen
    alice.keys("v")  # preview
    alice.wait("(preview)")
    alice.keys("q")
    alice.wait("y:Send")
    alice.keys("y")
    alice.wait("Mail sent.")
    wait_messages(mail, BOB, "INBOX", 1)
    msg = email.message_from_bytes(fetch_raw(mail, BOB, "INBOX", 1), policy=email.policy.default)
    assert str(msg["Subject"]) == "Lunch on Friday"
    assert msg.get_body(("plain",)).get_content().strip() == "Shall we have lunch on Friday?"
    assert not msg.defects
    wait_messages(mail, ALICE, "Sent", 1)  # the copy via APPEND
    alice.quit()


def test_bob_sees_new_mail_without_a_key(mail, tmp_path, screens):
    bob = Screen(mail, tmp_path, BOB)
    screens.append(bob)
    bob.wait("No messages in this folder.")
    r = mua(mail, ALICE, "send", "--to", BOB, "--subject", "Arrives by itself",
            input=b"IDLE brings it.\n")
    assert r.returncode == 0, r.stderr
    screen = bob.wait("Arrives by itself", timeout=20)
    assert "New mail in INBOX." in bob.wait("New mail in INBOX.")
    assert "Msgs:1 New:1" in screen or "Msgs:1 New:1" in bob.text()
    bob.quit()


def test_bob_opens_and_replies(mail, tmp_path, screens):
    original = append(mail, BOB, "Lunch on Friday", "Shall we have lunch on Friday?\n")
    bob = Screen(mail, tmp_path, BOB, body="Friday works for me.")
    screens.append(bob)
    bob.wait("Lunch on Friday")
    bob.keys("Enter")
    screen = bob.wait("Shall we have lunch on Friday?")
    assert "Subject: Lunch on Friday" in screen and f"From: {ALICE}" in screen
    bob.keys("r")
    screen = bob.wait("y:Send")
    assert "Subject: Re: Lunch on Friday" in screen
    assert "> Shall we have lunch on Friday?" in screen and "Friday works for me." in screen
    bob.keys("y")
    bob.wait("Mail sent.")
    wait_messages(mail, ALICE, "INBOX", 1)
    reply = email.message_from_bytes(fetch_raw(mail, ALICE, "INBOX", 1),
                                     policy=email.policy.default)
    assert reply["In-Reply-To"] == original and original in reply["References"]
    assert str(reply["Subject"]) == "Re: Lunch on Friday"
    bob.wait(" r ")  # the original is marked answered in the index
    bob.quit()


def test_alice_sees_the_reply_threaded(mail, tmp_path, screens):
    first = append(mail, ALICE, "Lunch on Friday", date="Mon, 01 Jan 2024 10:00:00 +0000")
    append(mail, ALICE, "Unrelated", date="Mon, 01 Jan 2024 11:00:00 +0000")
    append(mail, ALICE, "Re: Lunch on Friday", sender=BOB,
           headers=f"In-Reply-To: {first}\r\nReferences: {first}\r\n",
           date="Mon, 01 Jan 2024 12:00:00 +0000")
    # Arrives last but was written first: its Date header is out of UID order.
    append(mail, ALICE, "Early bird", date="Mon, 01 Jan 2024 09:00:00 +0000")
    alice = Screen(mail, tmp_path, ALICE)
    screens.append(alice)
    screen = alice.wait("└─>Re: Lunch on Friday")
    assert "(threads) --" in screen, screen

    def subjects(screen):
        names = ("Early bird", "Re: Lunch on Friday", "Lunch on Friday", "Unrelated")
        found = []
        for line in screen.splitlines():
            for name in names:
                if name in line and not line.startswith("-*-"):
                    found.append(("└─>" if "└─>" in line else "") + name)
                    break
        return found

    assert subjects(screen) == ["Early bird", "Lunch on Friday", "└─>Re: Lunch on Friday",
                                "Unrelated"], screen
    alice.keys("o")  # by date (the Date header, oldest first): the reply last, not indented
    screen = alice.wait("Sorted by date.")
    assert "(date) --" in screen and "└─>" not in screen, screen
    assert subjects(screen) == ["Early bird", "Lunch on Friday", "Unrelated",
                                "Re: Lunch on Friday"], screen
    alice.keys("l")  # a limit keeps the order
    alice.type("~f alice")
    alice.keys("Enter")
    screen = alice.wait("3 messages match.")
    assert subjects(screen) == ["Early bird", "Lunch on Friday", "Unrelated"], screen
    alice.keys("l")
    alice.keys("C-u")
    alice.keys("Enter")
    alice.wait("Showing all messages.")
    alice.keys("o")  # by arrival: the early bird came in last
    screen = alice.wait("Sorted by arrival.")
    assert "(arrival) --" in screen, screen
    assert subjects(screen) == ["Lunch on Friday", "Unrelated", "Re: Lunch on Friday",
                                "Early bird"], screen
    alice.keys("o")  # and back to threads
    screen = alice.wait("Sorted by threads.")
    assert "(threads) --" in screen, screen
    assert subjects(screen) == ["Early bird", "Lunch on Friday", "└─>Re: Lunch on Friday",
                                "Unrelated"], screen
    alice.quit()


def test_bob_saves_an_attachment(mail, tmp_path, screens):
    blob = os.urandom(7000)
    (tmp_path / "report.bin").write_bytes(blob)
    r = mua(mail, ALICE, "send", "--to", BOB, "--subject", "The report", "--attach",
            str(tmp_path / "report.bin"), input=b"Here it is.\n")
    assert r.returncode == 0, r.stderr
    wait_messages(mail, BOB, "INBOX", 1)
    save_dir = tmp_path / "bob"
    save_dir.mkdir()
    bob = Screen(mail, save_dir, BOB)
    screens.append(bob)
    screen = bob.wait("The report")
    row = [line for line in screen.splitlines() if "The report" in line][0]
    assert row[6:9] == "N A", row  # new, and the attachment flag
    bob.keys("Enter")
    bob.wait("[-- Attachment #1: report.bin (application/octet-stream, 7000 bytes) --]")
    bob.keys("v")
    bob.wait("report.bin")
    bob.keys("s")
    bob.wait("Save to file: report.bin")
    bob.keys("C-u")
    bob.type("saved.bin")
    bob.keys("Enter")
    bob.wait("Saved 7000 bytes to saved.bin.")
    assert (save_dir / "saved.bin").read_bytes() == blob
    bob.quit()


def test_bob_deletes_and_expunges(mail, tmp_path, screens):
    append(mail, BOB, "First to go", date="Mon, 01 Jan 2024 10:00:00 +0000")
    append(mail, BOB, "Second stays", date="Mon, 01 Jan 2024 11:00:00 +0000")
    bob = Screen(mail, tmp_path, BOB)
    screens.append(bob)
    bob.wait("Second stays")
    bob.keys("Home")
    bob.keys("d")
    bob.wait("Del:1")
    bob.keys("Home")  # d moved the cursor on: back to the deleted one
    bob.keys("u")
    bob.wait("Del:0")
    bob.keys("Home")
    bob.keys("d")
    bob.wait("Del:1")
    bob.keys("$")
    bob.wait("Expunge deleted messages?")
    bob.keys("y")
    screen = bob.wait("Msgs:1 ")
    assert "First to go" not in screen and "Second stays" in screen
    m = imap_login(mail, BOB)
    typ, data = m.select("INBOX", readonly=True)
    m.logout()
    assert int(data[0]) == 1
    bob.quit()


def test_resize_renders_80x24_and_132x43(mail, tmp_path, screens):
    long_subject = "A subject long enough to be cut at eighty columns, whole at thirty-two"
    append(mail, BOB, long_subject)
    bob = Screen(mail, tmp_path, BOB)
    screens.append(bob)
    screen = bob.wait("A subject long")
    lines = check_layout(screen, 80, 24, BOB)
    assert "thirty-two" not in screen
    bob.tmux("resize-window", "-t", bob.name, "-x", "132", "-y", "43")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "thirty-two" not in bob.text():
        time.sleep(0.1)
    screen = bob.text()
    lines = check_layout(screen, 132, 43, BOB)
    assert "thirty-two" in screen
    bob.tmux("resize-window", "-t", bob.name, "-x", "80", "-y", "24")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(bob.text().splitlines()) != 24:
        time.sleep(0.1)
    time.sleep(0.3)
    lines = check_layout(bob.text(), 80, 24, BOB)
    # The pager rewraps at the new width too.
    bob.keys("Enter")
    screen = bob.wait("Subject: A subject long")
    check_layout_pager = screen.split("\n")
    assert all(width(line) <= 80 for line in check_layout_pager)
    assert len([line for line in screen.splitlines() if line.strip()]) >= 4
    bob.quit()


def test_server_stopped_mid_session(mail, tmp_path, screens):
    append(mail, BOB, "Still here")
    bob = Screen(mail, tmp_path, BOB)
    screens.append(bob)
    bob.wait("Still here")
    mail.kill("imapd")
    screen = bob.wait("-- offline", timeout=20)
    assert ("connection to IMAP server 127.0.0.1:" in screen
            or "cannot connect to IMAP server: cannot connect to 127.0.0.1:" in screen), screen
    bob.keys("Enter")
    bob.wait("Not connected.")
    bob.keys("j")
    assert "MUA-EXIT" not in bob.text()
    mail.start("imapd")
    bob.wait("-- online", timeout=40)
    bob.wait("Still here", timeout=20)
    bob.quit()


def test_wide_characters_at_80x24(mail, tmp_path, screens):
    subject = "会議の議事録と東京出張の予定について 🎉📎 résumé — " + "漢字" * 20
    r = mua(mail, ALICE, "send", "--to", BOB, "--subject", subject,
            input="本文：こんにちは 👋\n".encode())
    assert r.returncode == 0, r.stderr
    wait_messages(mail, BOB, "INBOX", 1)
    bob = Screen(mail, tmp_path, BOB)
    screens.append(bob)
    screen = bob.wait("会議の議事録")
    lines = check_layout(screen, 80, 24, BOB)
    row = [line for line in lines if "会議の議事録" in line][0]
    # The row fills the width without passing it: wide characters count two columns.
    assert 78 <= width(row) <= 80, (width(row), row)
    bob.keys("Enter")
    screen = bob.wait("こんにちは 👋")
    lines = screen.split("\n")[:24]
    assert all(width(line) <= 80 for line in lines), screen
    subject_rows = [line for line in lines if "議事録" in line or "漢字" in line]
    assert len(subject_rows) >= 2  # the long Subject wraps, never cut mid-character
    assert "🎉📎" in screen
    bob.quit()


def test_home_end_and_pages_under_two_terms(mail, tmp_path, screens):
    for i in range(1, 61):
        append(mail, BOB, f"Message number {i:02d}",
               date=f"Mon, 01 Jan 2024 {10 + i // 60:02d}:{i % 60:02d}:00 +0000")
    for term in ("screen-256color", "xterm-256color"):
        d = tmp_path / term
        d.mkdir()
        bob = Screen(mail, d, BOB, term=term)
        screens.append(bob)
        bob.wait("Message number 60")
        bob.keys("Home")
        bob.wait("Message number 01")
        bob.keys("Enter")
        bob.wait("Subject: Message number 01")
        bob.keys("q")
        bob.keys("End")
        bob.keys("Enter")
        bob.wait("Subject: Message number 60")
        bob.keys("q")
        bob.keys("Home")
        bob.keys("PageDown")  # 21 rows of index at 80x24
        bob.keys("Enter")
        bob.wait("Subject: Message number 22")
        bob.keys("q")
        bob.keys("PageUp")
        bob.keys("Enter")
        bob.wait("Subject: Message number 01")
        bob.keys("q")
        bob.quit()


def test_pager_search(mail, tmp_path, screens):
    body = "".join(f"line {i}\n" for i in range(1, 80)).replace("line 50\n", "the needle\n")
    body = body.replace("line 70\n", "another needle\n")
    append(mail, BOB, "Haystack", body)
    bob = Screen(mail, tmp_path, BOB)
    screens.append(bob)
    bob.wait("Haystack")
    bob.keys("Enter")
    bob.wait("line 10")
    bob.keys("/")
    bob.wait("Search for:")
    bob.type("NEEDLE")
    bob.keys("Enter")
    screen = bob.wait("the needle")
    assert screen.splitlines()[1] == "the needle"  # scrolled to the top row
    bob.keys("n")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and bob.text().splitlines()[1] != "another needle":
        time.sleep(0.1)
    assert bob.text().splitlines()[1] == "another needle"
    bob.keys("n")
    bob.wait("Search wrapped to top.")
    bob.keys("End")
    bob.wait("(end of message)")
    bob.quit()


def test_help_screen_lists_every_key(mail, tmp_path, screens):
    bob = Screen(mail, tmp_path, BOB)
    screens.append(bob)
    bob.wait("-- online")
    bob.keys("?")
    screen = bob.wait("Index")
    for key in ("j / Down", "Enter", "m           compose", "r           reply",
                "g           group reply", "f           forward", "d / u", "$",
                "s / C", "F           flag", "N           mark read", "/  n", "l           limit",
                "o           sort", "c / y", "R           resume", "G           check",
                "A           next account"):
        assert key in screen, key
    seen = screen
    for _ in range(5):
        bob.keys("Space")
        seen += bob.text()
    for key in ("Home / End  top / end", "v           attachments", "h           all headers",
                "y  send", "a  attach a file", "P  postpone", "T  transcript", "?  this help",
                "Tab completes", "~b body"):
        assert key in seen, key
    bob.keys("x")
    bob.wait("q:Quit")
    bob.quit()


def test_transcript_pane_masks_the_password(mail, tmp_path, screens):
    alice = Screen(mail, tmp_path, ALICE, width=132, height=43)
    screens.append(alice)
    alice.wait("-- online")
    alice.keys("T")
    screen = alice.wait("-- transcript (T hides; secrets masked) --")
    assert "C: a" in screen and "IDLE" in screen, screen
    assert mail.passwords[ALICE] not in screen
    alice.keys("T")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "-- transcript" in alice.text():
        time.sleep(0.1)
    assert "-- transcript" not in alice.text()
    alice.quit()


def test_folders_with_counts_and_utf7_names(mail, tmp_path, screens):
    m = imap_login(mail, BOB)
    assert m.create('"Entw&APw-rfe 2024"')[0] == "OK"
    m.logout()
    append(mail, BOB, "Kept in a folder", folder="Entw&APw-rfe 2024")
    append(mail, BOB, "In the inbox")
    bob = Screen(mail, tmp_path, BOB)
    screens.append(bob)
    bob.wait("In the inbox")
    bob.keys("c")
    screen = bob.wait("Entwürfe 2024")
    lines = screen.splitlines()
    names = [line for line in lines if "msgs" in line]
    assert "INBOX" in names[0] and "1 msgs" in names[0] and "1 new" in names[0]
    # Special-use folders come right after INBOX, the others after them.
    specials = [i for i, line in enumerate(names) if line.rstrip().endswith(("Sent", "Drafts",
                                                                             "Trash", "Junk"))]
    plain = [i for i, line in enumerate(names) if "Entwürfe" in line]
    assert specials and plain and max(specials) < min(plain), screen
    # Open it (SELECT with the encoded name) and copy a message back by its UTF-8 name.
    for _ in range(plain[0]):
        bob.keys("j")
    bob.keys("Enter")
    bob.wait("-*- bob@example.test: Entwürfe 2024")
    bob.wait("Kept in a folder")
    bob.keys("C")
    bob.wait("Copy to folder:")
    bob.type("Entwürfe 2024")
    bob.keys("Enter")
    bob.wait("Msgs:2", timeout=10)  # the copy arrives in the open folder
    bob.quit()


def test_uidvalidity_change_refetches(mail, tmp_path, screens):
    m = imap_login(mail, BOB)
    m.create("Projects")
    m.logout()
    append(mail, BOB, "Old project", folder="Projects")
    bob = Screen(mail, tmp_path, BOB)
    screens.append(bob)
    bob.wait("-- online")
    bob.keys("c")
    screen = bob.wait("Projects")
    names = [line for line in screen.splitlines() if "msgs" in line]
    for _ in range([i for i, line in enumerate(names) if "Projects" in line][0]):
        bob.keys("j")
    bob.keys("Enter")
    bob.wait("Old project")
    # While the mua is away, the folder is made anew: a new UIDVALIDITY.
    mail.kill("imapd")
    bob.wait("-- offline", timeout=20)
    time.sleep(2.5)  # past the first reconnect attempt; the next one waits 4 s
    mail.start("imapd")
    m = imap_login(mail, BOB)
    assert m.delete("Projects")[0] == "OK"
    assert m.create("Projects")[0] == "OK"
    m.logout()
    append(mail, BOB, "New project", folder="Projects")
    screen = bob.wait("UIDVALIDITY of Projects changed", timeout=40)
    screen = bob.wait("New project", timeout=10)
    assert "Old project" not in screen
    bob.quit()


def test_untrusted_certificate_shows_its_fingerprint(mail, tmp_path, screens):
    conf = tmp_path / "lab.conf"
    conf.write_text(f"[account lab]\naddress = {ALICE}\nread_host = localhost\n"
                    f"read_port = {mail.port('imaps')}\nread_tls = implicit\n"
                    f"password_command = echo {mail.passwords[ALICE]}\n")
    alice = Screen(mail, tmp_path, ALICE, config=conf)
    screens.append(alice)
    screen = alice.wait("certificate verify failed")
    fp = cert_fingerprint(mail)
    joined = "".join(line.rstrip() for line in screen.splitlines())
    assert fp in joined, screen
    assert "tls_verify = no" in joined and "tls_ca_file" in joined
    check_layout(screen, 80, 24, ALICE)
    alice.quit()


def test_date_order_of_a_large_folder(mail, tmp_path, screens):
    """Dates run against arrival: until every Date is in the status line says
    "sorting…" (rows stay in arrival order); then date order puts the last
    arrival first, and End reaches the first arrival without whole messages."""
    count = 1500
    m = imap_login(mail, ALICE)
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    for i in range(1, count + 1):
        when = start + datetime.timedelta(minutes=count - i)
        date = email.utils.format_datetime(when)
        raw = (f"From: {ALICE}\r\nTo: {ALICE}\r\nSubject: Msg {i:05d}\r\nDate: {date}\r\n"
               f"Message-ID: <big{i}@example.test>\r\n\r\nText.\r\n")
        typ, _ = m.append("INBOX", None, None, raw.encode())
        assert typ == "OK"
    m.logout()
    alice = Screen(mail, tmp_path, ALICE)
    screens.append(alice)
    screen = alice.wait("sorting…", timeout=20)
    assert "(threads, sorting…) --" in screen, screen
    screen = alice.wait("(threads) --", timeout=60)
    alice.keys("o")
    screen = alice.wait("Sorted by date.")
    assert "(date) --" in screen, screen
    alice.keys("Home")
    screen = alice.wait("Msg 01500")
    first = [line for line in screen.splitlines() if "Msg " in line]
    assert "Msg 01500" in first[0] and "Msg 01499" in first[1], screen
    alice.keys("End")
    screen = alice.wait("Msg 00001")
    last = [line for line in screen.splitlines() if "Msg " in line]
    assert "Msg 00001" in last[-1] and "Msg 00002" in last[-2], screen
    alice.quit()
