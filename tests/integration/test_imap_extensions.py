"""imapd, the rest of issue 6 with exact responses: every command in its
states, LIST-EXTENDED selections (SUBSCRIBED, RECURSIVEMATCH, \\NonExistent,
LSUB's implied \\Noselect), INTERNALDATE zones, CONDSTORE, ESEARCH, the
FETCH macros and sections, every SEARCH key, UID COPY/MOVE, RENAME INBOX,
AUTHENTICATE LOGIN, the BYE after too many bad commands; POP3 and IMAP on
one mailbox; and how fast a delivery by the mda reaches a client in IDLE."""
import base64
import os
import poplib
import smtplib
import time

import pytest

from test_imap import ALICE, Raw

BOB = "bob@example.test"


def message(n, subject=None, extra="", body="Hello body\r\n", sender="Bob <bob@example.test>",
            date="Tue, 1 Jul 2003 10:52:37 +0200"):
    subject = subject if subject is not None else f"message {n}"
    return (f"From: {sender}\r\nTo: {ALICE}\r\nCc: carol@example.test\r\n"
            f"Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <m{n}@example.test>\r\n"
            f"{extra}\r\n{body}").encode()


@pytest.fixture
def imap_stack(stack_factory):
    extra = "[server]\nrun_as = root\n" if os.geteuid() == 0 else None
    s = stack_factory(config_extra=extra)
    s.start("imapd")
    return s


def login(stack, user=ALICE):
    r = Raw(stack, tls=True)
    lines, tagged = r.cmd(f'LOGIN {user} "{stack.passwords[user]}"')
    assert tagged.endswith("] Logged in"), tagged
    return r


def append(r, data, folder="INBOX", flags="", date="", untagged=None):
    """APPEND with a non-synchronising literal; returns the new UID. The
    untagged lines before the reply go to `untagged` (none are expected
    unless a list is given)."""
    args = " ".join(a for a in (folder, flags, date) if a)
    r.send(f"a APPEND {args} {{{len(data)}+}}\r\n".encode() + data + b"\r\n")
    line = r.line()
    while untagged is not None and line.startswith("* "):
        untagged.append(line)
        line = r.line()
    assert line.startswith("a OK [APPENDUID ") and line.endswith("] APPEND completed"), line
    return int(line.split()[4].rstrip("]"))


def literal_lines(r, command, tag="t"):
    """Sends a command whose answer holds literals; returns the raw answer."""
    r.send(f"{tag} {command}\r\n".encode())
    out = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if f"\r\n{tag} ".encode() in b"\r\n" + r.buf:
            head, _, rest = (b"\r\n" + r.buf).partition(f"\r\n{tag} ".encode())
            tagged, _, r.buf = rest.partition(b"\r\n")
            return (out + head)[2:] if not out else out + head, f"{tag} " + tagged.decode()
        r.sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = r.sock.recv(65536)
        assert chunk
        r.buf += chunk
    raise AssertionError("no tagged reply")


# ---- INTERNALDATE, APPEND ----

def test_append_keeps_the_zone_of_internaldate(imap_stack):
    r = login(imap_stack)
    append(r, message(1), flags="(\\Seen $Work)", date='"05-Mar-2021 23:10:00 -0500"')
    append(r, message(2), date='"29-Feb-2024 00:00:59 +1345"')
    assert r.cmd("SELECT INBOX")[1] == "t OK [READ-WRITE] SELECT completed"
    assert r.cmd("FETCH 1:2 (FLAGS INTERNALDATE)") == ([
        '* 1 FETCH (FLAGS (\\Seen \\Recent $Work) INTERNALDATE "05-Mar-2021 23:10:00 -0500")',
        '* 2 FETCH (FLAGS (\\Recent) INTERNALDATE "29-Feb-2024 00:00:59 +1345")'],
        "t OK FETCH completed")
    # SEARCH by internal date uses the date as the client gave it.
    assert r.cmd("SEARCH ON 5-Mar-2021") == (["* SEARCH 1"], "t OK SEARCH completed")
    assert r.cmd("SEARCH SINCE 29-Feb-2024") == (["* SEARCH 2"], "t OK SEARCH completed")
    assert r.cmd("SEARCH BEFORE 6-Mar-2021") == (["* SEARCH 1"], "t OK SEARCH completed")
    # Bad dates and zones are refused before the literal is read.
    r.send(b'b APPEND INBOX "31-Foo-2021 10:00:00 +0000" {5}\r\n')
    assert r.line() == "b BAD Invalid date-time"
    r.send(b'b APPEND INBOX "01-Jan-2021 10:00:00 +0075" {5}\r\n')
    assert r.line() == "b BAD Invalid date-time"
    r.close()


# ---- LIST, LSUB, LIST-EXTENDED ----

def test_list_extended_selection_and_return_options(imap_stack):
    r = login(imap_stack)
    for name in ("Work/Projects/2024", "Work/Old", "Private"):
        assert r.cmd(f"CREATE {name}") == ([], "t OK CREATE completed")
    assert r.cmd("SUBSCRIBE Work/Projects/2024") == ([], "t OK SUBSCRIBE completed")
    assert r.cmd("SUBSCRIBE Private") == ([], "t OK SUBSCRIBE completed")
    assert r.cmd("SUBSCRIBE Gone/Away") == ([], "t OK SUBSCRIBE completed")
    assert r.cmd("DELETE Work") == ([], "t OK DELETE completed")  # kept as \Noselect
    assert r.cmd('LIST "" %') == ([
        '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasNoChildren \\Archive) "/" Archive',
        '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
        '* LIST (\\HasNoChildren \\Junk) "/" Junk',
        '* LIST (\\HasNoChildren) "/" Private',
        '* LIST (\\HasNoChildren \\Sent) "/" Sent',
        '* LIST (\\HasNoChildren \\Trash) "/" Trash',
        '* LIST (\\Noselect \\HasChildren) "/" Work'], "t OK LIST completed")
    assert r.cmd('LIST "Work/" %') == ([
        '* LIST (\\HasNoChildren) "/" Work/Old',
        '* LIST (\\HasChildren) "/" Work/Projects'], "t OK LIST completed")
    # SUBSCRIBED: subscriptions, also of names that are no folder.
    # (The folders of a new user are subscribed.)
    assert r.cmd("UNSUBSCRIBE Junk") == ([], "t OK UNSUBSCRIBE completed")
    assert r.cmd('LIST (SUBSCRIBED) "" *') == ([
        '* LIST (\\HasNoChildren \\Subscribed) "/" INBOX',
        '* LIST (\\HasNoChildren \\Subscribed \\Archive) "/" Archive',
        '* LIST (\\HasNoChildren \\Subscribed \\Drafts) "/" Drafts',
        '* LIST (\\NonExistent \\Subscribed) "/" Gone/Away',
        '* LIST (\\HasNoChildren \\Subscribed) "/" Private',
        '* LIST (\\HasNoChildren \\Subscribed \\Sent) "/" Sent',
        '* LIST (\\HasNoChildren \\Subscribed \\Trash) "/" Trash',
        '* LIST (\\HasNoChildren \\Subscribed) "/" Work/Projects/2024'], "t OK LIST completed")
    for name in ("INBOX", "Archive", "Drafts", "Sent", "Trash"):
        assert r.cmd(f"UNSUBSCRIBE {name}") == ([], "t OK UNSUBSCRIBE completed")
    # RECURSIVEMATCH: the levels above a subscribed name, with CHILDINFO.
    assert r.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" %') == ([
        '* LIST (\\NonExistent) "/" Gone ("CHILDINFO" ("SUBSCRIBED"))',
        '* LIST (\\HasNoChildren \\Subscribed) "/" Private',
        '* LIST (\\Noselect \\HasChildren) "/" Work ("CHILDINFO" ("SUBSCRIBED"))'],
        "t OK LIST completed")
    assert r.cmd('LIST (RECURSIVEMATCH) "" %') == (
        [], "t BAD Invalid LIST selection options")
    # LSUB "%": a subscribed name below is shown as its \Noselect parent (6.3.9).
    assert r.cmd('LSUB "" %') == ([
        '* LSUB (\\Noselect) "/" Gone',
        '* LSUB () "/" Private',
        '* LSUB (\\Noselect) "/" Work'], "t OK LSUB completed")
    assert r.cmd('LSUB "" *') == ([
        '* LSUB () "/" Gone/Away',
        '* LSUB () "/" Private',
        '* LSUB () "/" Work/Projects/2024'], "t OK LSUB completed")
    # SPECIAL-USE selection, RETURN options, several patterns.
    assert r.cmd('LIST (SPECIAL-USE) "" *') == ([
        '* LIST (\\HasNoChildren \\Archive) "/" Archive',
        '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
        '* LIST (\\HasNoChildren \\Junk) "/" Junk',
        '* LIST (\\HasNoChildren \\Sent) "/" Sent',
        '* LIST (\\HasNoChildren \\Trash) "/" Trash'], "t OK LIST completed")
    assert r.cmd('LIST "" (INBOX Private) RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)') == ([
        '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasNoChildren \\Subscribed) "/" Private'], "t OK LIST completed")
    append(r, message(1))
    assert r.cmd('LIST "" (INBOX Work) RETURN (STATUS (MESSAGES UIDNEXT SIZE))') == ([
        '* LIST (\\HasNoChildren) "/" INBOX',
        f'* STATUS INBOX (MESSAGES 1 UIDNEXT 2 SIZE {len(message(1))})',
        '* LIST (\\Noselect \\HasChildren) "/" Work'], "t OK LIST completed")
    assert r.cmd('LIST "" "*" RETURN (FOO)') == ([], "t BAD Invalid LIST return options")
    assert r.cmd("STATUS Work (MESSAGES)") == ([], "t NO [NONEXISTENT] Mailbox cannot be selected")
    assert r.cmd("SELECT Work") == ([], "t NO [CANNOT] Mailbox cannot be selected")
    r.close()


# ---- the commands of each state ----

def test_commands_in_the_wrong_state(imap_stack):
    r = Raw(imap_stack, tls=True)
    for cmd in ("SELECT INBOX", "LIST \"\" *", "STATUS INBOX (MESSAGES)", "APPEND INBOX {1}",
                "ENABLE CONDSTORE", "NAMESPACE", "IDLE", "CREATE x"):
        assert r.cmd(cmd) == ([], "t BAD Authenticate first"), cmd
    assert r.cmd(f'LOGIN {ALICE} "{imap_stack.passwords[ALICE]}"')[1].endswith("Logged in")
    for cmd in ("FETCH 1 FLAGS", "STORE 1 FLAGS ()", "SEARCH ALL", "CHECK", "CLOSE",
                "UNSELECT", "EXPUNGE", "COPY 1 Trash", "MOVE 1 Trash", "UID FETCH 1 FLAGS"):
        assert r.cmd(cmd) == ([], "t BAD No mailbox selected"), cmd
    for cmd in (f"LOGIN {ALICE} x", "AUTHENTICATE PLAIN", "STARTTLS"):
        assert r.cmd(cmd) == ([], "t BAD Already authenticated"), cmd
    r.cmd("SELECT INBOX")
    assert r.cmd("LOGIN a b") == ([], "t BAD Already authenticated")
    assert r.cmd("STARTTLS") == ([], "t BAD Already authenticated")
    assert r.cmd("UID NOOP") == ([], "t BAD Unknown command")
    assert r.cmd("UID") == ([], "t BAD UID needs a command")
    r.close()


def test_examine_check_close_unselect(imap_stack):
    r = login(imap_stack)
    for n in range(1, 4):
        append(r, message(n))
    lines, tagged = r.cmd("EXAMINE INBOX")
    assert tagged == "t OK [READ-ONLY] EXAMINE completed"
    assert lines[:4] == ["* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
                         "* OK [PERMANENTFLAGS ()] Flags permitted", "* 3 EXISTS",
                         "* 0 RECENT"]
    assert r.cmd("STORE 1 +FLAGS (\\Deleted)") == ([], "t NO [READ-ONLY] Mailbox is read-only")
    assert r.cmd("EXPUNGE") == ([], "t NO [READ-ONLY] Mailbox is read-only")
    # A body fetch in EXAMINE does not set \Seen.
    lines, tagged = literal_lines(r, "FETCH 1 (BODY[TEXT])")
    assert lines == b"* 1 FETCH (BODY[TEXT] {12}\r\nHello body\r\n)" and \
        tagged == "t OK FETCH completed"
    lines, tagged = r.cmd("SELECT INBOX")
    assert lines[0] == "* OK [CLOSED] Previous mailbox closed" and "* 3 EXISTS" in lines
    assert "* 3 RECENT" in lines and "* OK [UNSEEN 1] First unseen" in lines
    assert r.cmd("CHECK") == ([], "t OK CHECK completed")
    assert r.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)") == ([], "t OK STORE completed")
    # UNSELECT leaves without expunging; CLOSE expunges silently.
    assert r.cmd("UNSELECT") == ([], "t OK UNSELECT completed")
    assert r.cmd("STATUS INBOX (MESSAGES)") == (["* STATUS INBOX (MESSAGES 3)"],
                                                "t OK STATUS completed")
    r.cmd("SELECT INBOX")
    assert r.cmd("CLOSE") == ([], "t OK CLOSE completed")
    assert r.cmd("STATUS INBOX (MESSAGES RECENT UNSEEN UIDVALIDITY)")[0][0].startswith(
        "* STATUS INBOX (MESSAGES 2 RECENT 0 UNSEEN 2 UIDVALIDITY ")
    assert r.cmd("NOOP") == ([], "t OK NOOP completed")
    r.close()


def test_fetch_macros_and_sections(imap_stack):
    r = login(imap_stack)
    msg = message(1, extra="X-Extra: yes\r\n")
    append(r, msg, date='"01-Jul-2003 10:52:37 +0200"')
    r.cmd("SELECT INBOX")
    env = ('("Tue, 1 Jul 2003 10:52:37 +0200" "message 1" (("Bob" NIL "bob" "example.test")) '
           '(("Bob" NIL "bob" "example.test")) (("Bob" NIL "bob" "example.test")) '
           '((NIL NIL "alice" "example.test")) ((NIL NIL "carol" "example.test")) NIL NIL '
           '"<m1@example.test>")')
    date = 'INTERNALDATE "01-Jul-2003 10:52:37 +0200"'
    size = f"RFC822.SIZE {len(msg)}"
    body = '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1)'
    assert r.cmd("FETCH 1 FAST") == ([f"* 1 FETCH (FLAGS (\\Recent) {date} {size})"],
                                     "t OK FETCH completed")
    assert r.cmd("FETCH 1 ALL") == ([f"* 1 FETCH (FLAGS (\\Recent) {date} {size} ENVELOPE {env})"],
                                    "t OK FETCH completed")
    assert r.cmd("FETCH 1 FULL") == (
        [f"* 1 FETCH (FLAGS (\\Recent) {date} {size} ENVELOPE {env} BODY {body})"],
        "t OK FETCH completed")
    header = msg.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    out, tagged = literal_lines(r, "FETCH 1 (RFC822.HEADER BODY.PEEK[HEADER.FIELDS.NOT (To Cc "
                                   "Date Message-ID X-Extra)])")
    assert out == (b"* 1 FETCH (RFC822.HEADER {%d}\r\n" % len(header) + header +
                   b" BODY[HEADER.FIELDS.NOT (TO CC DATE MESSAGE-ID X-EXTRA)] {52}\r\n"
                   b"From: Bob <bob@example.test>\r\nSubject: message 1\r\n\r\n)")
    # Partial fetches and RFC822.TEXT (which sets \Seen).
    out, tagged = literal_lines(r, "FETCH 1 (BODY.PEEK[]<0.6> BODY.PEEK[TEXT]<6.100>)")
    assert out == b"* 1 FETCH (BODY[]<0> {6}\r\nFrom:  BODY[TEXT]<6> {6}\r\nbody\r\n)"
    out, tagged = literal_lines(r, "FETCH 1 RFC822.TEXT")
    assert out == b"* 1 FETCH (RFC822.TEXT {12}\r\nHello body\r\n FLAGS (\\Seen \\Recent))"
    out, tagged = literal_lines(r, "UID FETCH 1 (RFC822)")
    assert out == b"* 1 FETCH (UID 1 RFC822 {%d}\r\n" % len(msg) + msg + b")"
    assert r.cmd("FETCH 1 (BODY[1.2.3])")[1] == "t OK FETCH completed"
    for bad in ("FETCH 1 (BODY[HEADER.FIELDS])", "FETCH 1 BODY[MIME]", "FETCH 1 (FLAGS",
                "FETCH 1 BODY[]<1.0>", "FETCH 1 ()", "FETCH 1 NOSUCHITEM"):
        assert r.cmd(bad)[1].startswith("t BAD "), bad
    r.close()


def test_every_search_key(imap_stack):
    r = login(imap_stack)
    append(r, message(1, "alpha", date="Mon, 1 Jan 2001 12:00:00 +0000"),
           flags="(\\Answered \\Seen)", date='"01-Jan-2001 12:00:00 +0000"')
    append(r, message(2, "beta", sender="Zed <zed@example.org>",
                      extra="Bcc: hidden@example.test\r\nX-Tag: blue\r\n",
                      body="Some longer body text with the word kiwi in it.\r\n" * 5,
                      date="Fri, 2 Feb 2002 12:00:00 +0000"),
           flags="(\\Flagged \\Draft $Label)", date='"02-Feb-2002 12:00:00 +0000"')
    append(r, message(3, "=?UTF-8?Q?gr=C3=BC=C3=9Fe?=", date="Sun, 3 Mar 2003 12:00:00 +0000"),
           flags="(\\Deleted)", date='"03-Mar-2003 12:00:00 +0000"')
    r.cmd("SELECT INBOX")
    assert r.cmd("STORE 1 -FLAGS.SILENT (\\Recent)")[1] == "t OK STORE completed"
    cases = {
        "ALL": "1 2 3", "ANSWERED": "1", "UNANSWERED": "2 3", "DELETED": "3",
        "UNDELETED": "1 2", "DRAFT": "2", "UNDRAFT": "1 3", "FLAGGED": "2", "UNFLAGGED": "1 3",
        "SEEN": "1", "UNSEEN": "2 3", "KEYWORD $Label": "2", "UNKEYWORD $label": "1 3",
        "RECENT": "1 2 3", "NEW": "2 3", "OLD": "", "BEFORE 2-Feb-2002": "1",
        "ON 2-Feb-2002": "2", "SINCE 2-Feb-2002": "2 3", "SENTBEFORE 2-Feb-2002": "1",
        "SENTON 3-Mar-2003": "3", "SENTSINCE 2-Feb-2002": "2 3", "FROM zed": "2",
        "TO alice@": "1 2 3", "CC carol": "1 2 3", "BCC hidden": "2", "SUBJECT ALPHA": "1",
        'SUBJECT "grüße"': "3", "HEADER X-Tag blue": "2", 'HEADER X-Tag ""': "2",
        "BODY kiwi": "2", "TEXT kiwi": "2", "TEXT zed@example.org": "2",
        "LARGER 400": "2", "SMALLER 400": "1 3", "UID 2:3": "2 3", "2,3": "2 3", "*": "3",
        "NOT SEEN": "2 3", "OR SEEN DELETED": "1 3", "(SEEN ANSWERED)": "1",
        "NOT (OR DRAFT (DELETED UNSEEN))": "1", "OR OR SEEN DRAFT DELETED": "1 2 3",
        "1:2 NOT 1": "2", "UNDELETED SUBJECT beta FROM zed": "2",
    }
    for criteria, expected in cases.items():
        want = "* SEARCH" + (" " + expected if expected else "")
        assert r.cmd(f"SEARCH CHARSET UTF-8 {criteria}") == ([want], "t OK SEARCH completed"), \
            criteria
    assert r.cmd("UID SEARCH RETURN (MIN MAX COUNT ALL) NOT DELETED") == (
        ['* ESEARCH (TAG "t") UID MIN 1 MAX 2 COUNT 2 ALL 1:2'], "t OK UID SEARCH completed")
    assert r.cmd("SEARCH RETURN () FLAGGED") == (
        ['* ESEARCH (TAG "t") ALL 2'], "t OK SEARCH completed")
    assert r.cmd("SEARCH RETURN (COUNT) KEYWORD nothing") == (
        ['* ESEARCH (TAG "t") COUNT 0'], "t OK SEARCH completed")
    assert r.cmd("SEARCH RETURN (SAVE) ALL") == ([], "t BAD Unknown SEARCH return option")
    assert r.cmd("SEARCH BEFORE 31-Foo-2001") == ([], "t BAD Invalid search date")
    assert r.cmd("SEARCH OR SEEN") == ([], "t BAD Missing search key")
    assert r.cmd("SEARCH NOSUCHKEY") == ([], "t BAD Unknown search key")
    assert r.cmd("SEARCH CHARSET ISO-2022-JP ALL") == (
        [], "t NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
    r.close()


def test_condstore(imap_stack):
    r = login(imap_stack)
    append(r, message(1))
    append(r, message(2))
    lines, tagged = r.cmd("SELECT INBOX (CONDSTORE)")
    assert tagged == "t OK [READ-WRITE] SELECT completed"
    hms = int(next(ln for ln in lines if "HIGHESTMODSEQ" in ln).split()[3].rstrip("]"))
    assert r.cmd("STATUS INBOX (HIGHESTMODSEQ)") == (
        [f"* STATUS INBOX (HIGHESTMODSEQ {hms})"], "t OK STATUS completed")
    assert r.cmd("FETCH 1 (UID)") == ([f"* 1 FETCH (UID 1 MODSEQ ({hms - 1}))"],
                                      "t OK FETCH completed")
    assert r.cmd(f"STORE 2 (UNCHANGEDSINCE {hms}) +FLAGS (\\Flagged)") == (
        [f"* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ ({hms + 1}))"], "t OK STORE completed")
    assert r.cmd(f"UID STORE 1:2 (UNCHANGEDSINCE {hms}) +FLAGS.SILENT (\\Seen)") == (
        [f"* 1 FETCH (UID 1 MODSEQ ({hms + 2}))"],
        "t OK [MODIFIED 2] Conditional STORE failed")
    assert r.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})") == ([
        f"* 1 FETCH (FLAGS (\\Seen \\Recent) MODSEQ ({hms + 2}))",
        f"* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ ({hms + 1}))"], "t OK FETCH completed")
    assert r.cmd(f"SEARCH MODSEQ {hms + 2}") == ([f"* SEARCH 1 (MODSEQ {hms + 2})"],
                                                 "t OK SEARCH completed")
    assert r.cmd(f'SEARCH MODSEQ "/flags/\\\\Seen" all {hms + 1}') == (
        [f"* SEARCH 1 2 (MODSEQ {hms + 2})"], "t OK SEARCH completed")
    assert r.cmd("FETCH 1 FLAGS (CHANGEDSINCE x)") == ([], "t BAD Invalid FETCH items")
    assert r.cmd("SELECT INBOX (NOSUCH)") == ([], "t BAD Unknown SELECT parameter")
    r.close()


def test_uid_copy_move_and_uidplus(imap_stack):
    r = login(imap_stack)
    for n in range(1, 5):
        append(r, message(n))
    r.cmd("SELECT INBOX")
    validity = int(r.cmd("STATUS Trash (UIDVALIDITY)")[0][0].split()[-1].rstrip(")"))
    assert r.cmd("UID COPY 2:3 Trash") == (
        [], f"t OK [COPYUID {validity} 2:3 1,2] COPY completed")
    assert r.cmd("UID MOVE 1,4 Trash") == (
        [f"* OK [COPYUID {validity} 1,4 3,4] Moved", "* 4 EXPUNGE", "* 1 EXPUNGE"],
        "t OK MOVE completed")
    assert r.cmd("UID COPY 99 Trash") == ([], "t OK No messages to copy")
    assert r.cmd("COPY 1 Nope") == ([], "t NO [TRYCREATE] Mailbox does not exist")
    assert r.cmd("MOVE 9 Trash") == ([], "t BAD Invalid message sequence number")
    assert r.cmd("FETCH 1:* UID") == (["* 1 FETCH (UID 2)", "* 2 FETCH (UID 3)"],
                                      "t OK FETCH completed")
    r.cmd("SELECT Trash")
    assert r.cmd("UID FETCH 1:* (FLAGS)") == ([
        "* 1 FETCH (UID 1 FLAGS (\\Recent))", "* 2 FETCH (UID 2 FLAGS (\\Recent))",
        "* 3 FETCH (UID 3 FLAGS (\\Recent))", "* 4 FETCH (UID 4 FLAGS (\\Recent))"],
        "t OK UID FETCH completed")
    r.close()


def test_rename_inbox_and_subscriptions(imap_stack):
    r = login(imap_stack)
    append(r, message(1))
    append(r, message(2))
    assert r.cmd("RENAME INBOX Old-Inbox") == ([], "t OK RENAME completed")
    assert r.cmd("STATUS INBOX (MESSAGES UIDNEXT)") == (
        ["* STATUS INBOX (MESSAGES 0 UIDNEXT 3)"], "t OK STATUS completed")
    assert r.cmd("STATUS Old-Inbox (MESSAGES)") == (
        ["* STATUS Old-Inbox (MESSAGES 2)"], "t OK STATUS completed")
    assert r.cmd("RENAME Old-Inbox INBOX") == (
        [], "t NO [ALREADYEXISTS] Target mailbox already exists")
    assert r.cmd("RENAME Nope Other") == ([], "t NO [NONEXISTENT] Mailbox does not exist")
    assert r.cmd("RENAME Old-Inbox Trash") == (
        [], "t NO [ALREADYEXISTS] Target mailbox already exists")
    assert r.cmd("CREATE inbox") == ([], "t NO [ALREADYEXISTS] Mailbox already exists")
    assert r.cmd("CREATE Inbox/Sub") == ([], "t OK CREATE completed")
    assert r.cmd('LIST "" inbox*') == ([
        '* LIST (\\HasChildren) "/" INBOX', '* LIST (\\HasNoChildren) "/" INBOX/Sub'],
        "t OK LIST completed")
    r.close()


def test_authenticate_login_mechanism_idle_in_authenticated_state(imap_stack):
    r = Raw(imap_stack, tls=True)
    r.send(b"a AUTHENTICATE LOGIN\r\n")
    assert r.line() == "+ " + base64.b64encode(b"Username:").decode()
    r.send(base64.b64encode(ALICE.encode()) + b"\r\n")
    assert r.line() == "+ " + base64.b64encode(b"Password:").decode()
    r.send(base64.b64encode(imap_stack.passwords[ALICE].encode()) + b"\r\n")
    assert r.line().endswith("] Logged in")
    assert r.cmd("ENABLE CONDSTORE X-UNKNOWN") == (["* ENABLED CONDSTORE"], "t OK ENABLE completed")
    assert r.cmd("ENABLE CONDSTORE") == (["* ENABLED"], "t OK ENABLE completed")
    assert r.cmd("ID NIL") == (['* ID ("name" "mailstack" "version" "0.1")'], "t OK ID completed")
    assert r.cmd("NAMESPACE") == (['* NAMESPACE (("" "/")) NIL NIL'], "t OK NAMESPACE completed")
    r.send(b"i IDLE\r\n")
    assert r.line() == "+ idling"
    r.send(b"DONE\r\n")
    assert r.line() == "i OK IDLE terminated"
    r.send(b"i IDLE\r\n")
    assert r.line() == "+ idling"
    r.send(b"NOT-DONE\r\n")
    assert r.line() == "i BAD Expected DONE"
    assert r.cmd("LOGOUT") == (["* BYE Logging out"], "t OK LOGOUT completed")
    r.close()


def test_too_many_bad_commands_end_the_session(imap_stack):
    r = login(imap_stack)
    for i in range(19):
        assert r.cmd("BOGUS") == ([], "t BAD Unknown command")
    # A good command starts the count again.
    assert r.cmd("NOOP") == ([], "t OK NOOP completed")
    for i in range(19):
        assert r.cmd("FETCH 1 FLAGS") == ([], "t BAD No mailbox selected")
    r.send(b"t (((\r\n")
    assert r.line() == "t BAD Error in IMAP command: Unclosed list"
    assert r.line() == "* BYE Too many invalid commands"
    with pytest.raises((EOFError, OSError)):
        r.line(timeout=5)
    r.close()


# ---- many sessions, pop3d and the mda on one mailbox ----

def test_pop3_deletion_is_an_imap_expunge(stack_factory):
    extra = "[server]\nrun_as = root\n" if os.geteuid() == 0 else None
    stack = stack_factory(config_extra=extra)
    stack.start("imapd", "pop3d")
    a = login(stack, BOB)
    for n in range(1, 4):
        append(a, message(n))
    assert a.cmd("SELECT INBOX")[1] == "t OK [READ-WRITE] SELECT completed"
    b = login(stack, BOB)
    assert b.cmd("SELECT INBOX")[1] == "t OK [READ-WRITE] SELECT completed"

    def pop_delete(number):
        p = poplib.POP3_SSL("127.0.0.1", stack.port("pop3s"), context=stack.ssl_context(),
                            timeout=15)
        p.user(BOB)
        p.pass_(stack.passwords[BOB])
        assert p.dele(number).startswith(b"+OK")
        assert p.quit() == b"+OK Logging out, 1 messages deleted"

    # After NOOP.
    pop_delete(2)
    assert a.cmd("NOOP") == (["* 2 EXPUNGE"], "t OK NOOP completed")
    # No EXPUNGE during FETCH by sequence number; it comes at the next NOOP.
    b.send(b"i IDLE\r\n")
    assert b.line() == "+ idling"
    assert b.line(timeout=5) == "* 2 EXPUNGE"
    pop_delete(1)
    # In IDLE, at once.
    assert b.line(timeout=5) == "* 1 EXPUNGE"
    b.send(b"DONE\r\n")
    assert b.line() == "i OK IDLE terminated"
    # The message is gone from the store but not yet from A's view: FETCH
    # answers OK without data for it (RFC 2180 4.1.3), the EXPUNGE waits.
    assert a.cmd("FETCH 1 UID") == ([], "t OK FETCH completed")
    assert a.cmd("NOOP") == (["* 1 EXPUNGE"], "t OK NOOP completed")
    assert a.cmd("FETCH 1:* UID") == (["* 1 FETCH (UID 3)"], "t OK FETCH completed")
    a.close()
    b.close()


def test_idle_hears_an_lmtp_delivery_at_once(stack_factory):
    extra = "[server]\nrun_as = root\n" if os.geteuid() == 0 else None
    stack = stack_factory(config_extra=extra)
    stack.start("mda", "imapd")
    r = login(stack, BOB)
    assert r.cmd("SELECT INBOX")[1] == "t OK [READ-WRITE] SELECT completed"
    r.send(b"i IDLE\r\n")
    assert r.line() == "+ idling"
    lmtp = smtplib.LMTP(stack.path("run", "lmtp.sock"), timeout=30)
    lmtp.ehlo("test")
    latencies = []
    for n in range(1, 6):
        lmtp.sendmail("sender@example.org", [BOB], message(n))
        accepted = time.monotonic()  # the 250 for the one recipient was read
        assert r.line(timeout=5) == f"* {n} EXISTS"
        latencies.append(time.monotonic() - accepted)
        assert r.line(timeout=5) == f"* {n} RECENT"
    lmtp.quit()
    r.send(b"DONE\r\n")
    assert r.line() == "i OK IDLE terminated"
    print(f"IDLE latency after LMTP 250: max {max(latencies) * 1000:.1f} ms, "
          f"all {[round(x * 1000, 1) for x in latencies]} ms")
    assert max(latencies) < 0.5
    r.close()


def test_three_sessions_on_one_mailbox(imap_stack):
    a = login(imap_stack)
    for n in range(1, 4):
        append(a, message(n))
    assert a.cmd("SELECT INBOX")[1] == "t OK [READ-WRITE] SELECT completed"  # claims \Recent
    b = login(imap_stack)
    c = login(imap_stack)
    for r in (b, c):
        lines, tagged = r.cmd("SELECT INBOX")
        assert "* 3 EXISTS" in lines and "* 0 RECENT" in lines
    c.send(b"i IDLE\r\n")
    assert c.line() == "+ idling"
    # A flag change by A: A answers for itself, C hears it in IDLE, B at NOOP.
    assert a.cmd("STORE 1 +FLAGS (\\Flagged)") == (
        ["* 1 FETCH (FLAGS (\\Flagged \\Recent))"], "t OK STORE completed")
    assert c.line(timeout=5) == "* 1 FETCH (FLAGS (\\Flagged))"
    assert b.cmd("NOOP") == (["* 1 FETCH (FLAGS (\\Flagged))"], "t OK NOOP completed")
    # B expunges message 2.
    assert b.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)") == ([], "t OK STORE completed")
    assert c.line(timeout=5) == "* 2 FETCH (FLAGS (\\Deleted))"
    assert b.cmd("EXPUNGE") == (["* 2 EXPUNGE"], "t OK EXPUNGE completed")
    assert c.line(timeout=5) == "* 2 EXPUNGE"
    # A: the flag change is news at any command, the EXPUNGE not during FETCH,
    # and sequence numbers do not move until it comes.
    # (message 2 is gone from the store: FETCH has nothing for it)
    assert a.cmd("FETCH 1:* UID") == (["* 1 FETCH (UID 1)", "* 3 FETCH (UID 3)"],
                                      "t OK FETCH completed")
    assert a.cmd("NOOP") == (["* 2 EXPUNGE"], "t OK NOOP completed")
    assert a.cmd("FETCH 1:* UID") == (["* 1 FETCH (UID 1)", "* 2 FETCH (UID 3)"],
                                      "t OK FETCH completed")
    # A new message from B: all three learn of it; B, whose command reports
    # it first, has it \Recent (RFC 3501 2.3.2: one session only).
    seen_by_b = []
    append(b, message(4), untagged=seen_by_b)
    assert seen_by_b == ["* 3 EXISTS", "* 1 RECENT"]
    assert c.line(timeout=5) == "* 3 EXISTS"
    assert c.line(timeout=5) == "* 0 RECENT"
    assert a.cmd("NOOP") == (["* 3 EXISTS", "* 2 RECENT"], "t OK NOOP completed")
    assert b.cmd("NOOP") == ([], "t OK NOOP completed")
    assert b.cmd("SEARCH RECENT") == (["* SEARCH 3"], "t OK SEARCH completed")
    assert a.cmd("SEARCH RECENT") == (["* SEARCH 1 2"], "t OK SEARCH completed")
    c.send(b"DONE\r\n")
    assert c.line() == "i OK IDLE terminated"
    assert c.cmd("SEARCH RECENT") == (["* SEARCH"], "t OK SEARCH completed")
    for r in (a, b, c):
        r.close()


def test_multiappend(imap_stack):
    r = login(imap_stack)
    m1, m2, m3 = message(1), message(2), message(3)
    validity = int(r.cmd("STATUS Drafts (UIDVALIDITY)")[0][0].split()[-1].rstrip(")"))
    # Three messages, each with its own flags and date, synchronising literals.
    r.send(b"m APPEND Drafts (\\Draft) {%d}\r\n" % len(m1))
    assert r.line() == "+ Ready for literal data"
    r.send(m1 + b' (\\Seen) "02-Jan-2020 03:04:05 +0100" {%d}\r\n' % len(m2))
    assert r.line() == "+ Ready for literal data"
    r.send(m2 + b" {%d}\r\n" % len(m3))
    assert r.line() == "+ Ready for literal data"
    r.send(m3 + b"\r\n")
    assert r.line() == f"m OK [APPENDUID {validity} 1:3] APPEND completed"
    r.cmd("EXAMINE Drafts")
    assert r.cmd("FETCH 1:3 (FLAGS RFC822.SIZE)") == ([
        f"* 1 FETCH (FLAGS (\\Draft) RFC822.SIZE {len(m1)})",
        f"* 2 FETCH (FLAGS (\\Seen) RFC822.SIZE {len(m2)})",
        f"* 3 FETCH (FLAGS () RFC822.SIZE {len(m3)})"], "t OK FETCH completed")
    assert r.cmd("FETCH 2 INTERNALDATE") == (
        ['* 2 FETCH (INTERNALDATE "02-Jan-2020 03:04:05 +0100")'], "t OK FETCH completed")
    # All or none: a bad second message drops the first one too.
    r.send(b"n APPEND Drafts {%d+}\r\n" % len(m1) + m1 + b" (\\Bogus) {3+}\r\nabc\r\n")
    assert r.line() == "n BAD Invalid flags"
    r.send(b"n APPEND Drafts {%d+}\r\n" % len(m1) + m1 + b" {0+}\r\n\r\n")
    assert r.line() == "n NO Empty message"
    assert r.cmd("STATUS Drafts (MESSAGES UIDNEXT)") == (
        ["* STATUS Drafts (MESSAGES 3 UIDNEXT 4)"], "t OK STATUS completed")
    assert r.cmd("NOOP") == ([], "t OK NOOP completed")
    r.close()


def test_sequence_numbers_follow_scattered_expunges(imap_stack):
    """The view keeps UIDs as runs: expunges at the start, the end and in the
    middle of runs, by this session and by another, keep every sequence
    number and UID lookup exact."""
    a = login(imap_stack)
    b = login(imap_stack)
    for n in range(1, 21):
        append(a, message(n))
    a.cmd("SELECT INBOX")
    b.cmd("SELECT INBOX")
    live = list(range(1, 21))

    def check(r):
        lines, tagged = r.cmd("FETCH 1:* UID")
        assert lines == [f"* {i + 1} FETCH (UID {u})" for i, u in enumerate(live)]
        assert r.cmd("UID SEARCH UID 5:12") == (
            ["* SEARCH" + "".join(f" {u}" for u in live if 5 <= u <= 12)],
            "t OK UID SEARCH completed")
        assert r.cmd("SEARCH UID 5:12") == (
            ["* SEARCH" + "".join(f" {i + 1}" for i, u in enumerate(live) if 5 <= u <= 12)],
            "t OK SEARCH completed")

    for gone in ([7], [8, 3], [15, 1, 20], [2, 4, 5, 6]):
        uids = ",".join(map(str, gone))
        assert b.cmd(f"UID STORE {uids} +FLAGS.SILENT (\\Deleted)") == ([], "t OK STORE completed")
        lines, tagged = b.cmd(f"UID EXPUNGE {uids}")
        assert tagged == "t OK EXPUNGE completed"
        # Each EXPUNGE counts the ones before it (RFC 3501 7.4.1), in UID order.
        expected = []
        view = list(live)
        for u in sorted(gone):
            expected.append(f"* {view.index(u) + 1} EXPUNGE")
            view.remove(u)
        assert lines == expected
        lines, tagged = a.cmd("NOOP")
        assert lines == expected and tagged == "t OK NOOP completed"
        live = view
        check(a)
        check(b)
    # New messages after the gaps extend the view.
    append(b, message(21), untagged=[])
    live.append(21)
    a.cmd("NOOP")
    check(a)
    assert a.cmd("FETCH * UID") == ([f"* {len(live)} FETCH (UID 21)"], "t OK FETCH completed")
    a.close()
    b.close()
