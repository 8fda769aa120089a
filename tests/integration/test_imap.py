"""imapd with Python's imaplib and raw sockets: states, authentication, the
mailbox commands, FETCH/SEARCH/STORE/COPY/MOVE/EXPUNGE, bad input, several
sessions on one mailbox and IDLE. Replies are checked exactly."""
import base64
import imaplib
import os
import select
import socket
import ssl
import subprocess
import time

import pytest

ALICE = "alice@example.test"
MSG1 = (b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\n"
        b"Subject: hello there\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
        b"Message-ID: <m1@example.test>\r\n\r\nHello body\r\n")
MSG2 = (b"From: Carol <carol@example.test>\r\nTo: alice@example.test\r\n"
        b"Subject: second\r\nDate: Wed, 2 Jul 2003 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPart one text\r\n"
        b"--b1\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\n"
        b"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b1--\r\n")


@pytest.fixture
def imap_stack(stack_factory):
    extra = "[server]\nrun_as = root\n" if os.geteuid() == 0 else None
    s = stack_factory(config_extra=extra)
    s.start("imapd")
    return s


def connect(stack, login=True):
    m = imaplib.IMAP4("127.0.0.1", stack.port("imap"), timeout=10)
    m.starttls(ssl_context=stack.ssl_context())
    if login:
        m.login(ALICE, stack.passwords[ALICE])
    return m


class Raw:
    """A line-level client for exact transcripts and malformed input."""

    def __init__(self, stack, tls=False):
        self.sock = socket.create_connection(("127.0.0.1", stack.port("imaps" if tls else "imap")),
                                             timeout=10)
        if tls:
            self.sock = stack.ssl_context().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data)

    def line(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def cmd(self, text, tag="t"):
        """Sends a command; returns the untagged lines and the tagged one."""
        self.send(f"{tag} {text}\r\n".encode())
        lines = []
        for _ in range(10000):
            ln = self.line()
            if ln.startswith(tag + " "):
                return lines, ln
            lines.append(ln)
        raise AssertionError("no tagged reply")

    def close(self):
        self.sock.close()


def test_greeting_and_capability_before_tls(imap_stack):
    r = Raw(imap_stack)
    assert r.greeting == ("* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS "
                          "LOGINDISABLED] mailstack IMAP4rev1 ready")
    assert r.cmd("CAPABILITY") == (
        ["* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS LOGINDISABLED"],
        "t OK CAPABILITY completed")
    assert r.cmd("NOOP") == ([], "t OK NOOP completed")
    assert r.cmd(f"LOGIN {ALICE} x") == (
        [], "t NO [PRIVACYREQUIRED] Plaintext authentication is disabled, use STARTTLS")
    assert r.cmd("AUTHENTICATE PLAIN") == (
        [], "t NO [PRIVACYREQUIRED] Plaintext authentication is disabled, use STARTTLS")
    assert r.cmd("SELECT INBOX") == ([], "t BAD Authenticate first")
    assert r.cmd("LOGOUT") == (["* BYE Logging out"], "t OK LOGOUT completed")
    r.close()


def test_starttls_login_and_implicit_tls(imap_stack):
    m = imaplib.IMAP4("127.0.0.1", imap_stack.port("imap"), timeout=10)
    assert m.starttls(ssl_context=imap_stack.ssl_context())[0] == "OK"
    typ, caps = m.capability()
    assert caps == [b"IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE AUTH=PLAIN AUTH=LOGIN "
                    b"AUTH=SCRAM-SHA-256"]
    typ, data = m.login(ALICE, imap_stack.passwords[ALICE])
    assert typ == "OK" and data[0].endswith(b"] Logged in")
    assert b"UIDPLUS MOVE" in data[0] and b"APPENDLIMIT=52428800 STATUS=SIZE" in data[0]
    m.logout()
    s = imaplib.IMAP4_SSL("127.0.0.1", imap_stack.port("imaps"),
                          ssl_context=imap_stack.ssl_context(), timeout=10)
    assert s.login(ALICE, imap_stack.passwords[ALICE])[0] == "OK"
    s.logout()


def test_authenticate_plain_sasl_ir_and_failures(imap_stack):
    r = Raw(imap_stack, tls=True)
    pw = imap_stack.passwords[ALICE]
    ir = base64.b64encode(f"\0{ALICE}\0{pw}".encode()).decode()
    lines, tagged = r.cmd(f"AUTHENTICATE PLAIN {ir}")
    assert lines == [] and tagged.startswith("t OK [CAPABILITY IMAP4rev1") and \
        tagged.endswith("] Logged in")
    r.close()
    # Without an initial response: an empty challenge first.
    r = Raw(imap_stack, tls=True)
    r.send(b"a AUTHENTICATE PLAIN\r\n")
    assert r.line() == "+ "
    r.send(base64.b64encode(f"\0{ALICE}\0{pw}".encode()) + b"\r\n")
    assert r.line().endswith("] Logged in")
    r.close()
    # Cancel with "*".
    r = Raw(imap_stack, tls=True)
    r.send(b"a AUTHENTICATE PLAIN\r\n")
    assert r.line() == "+ "
    r.send(b"*\r\n")
    assert r.line() == "a BAD Authentication aborted"
    assert r.cmd("AUTHENTICATE X-UNKNOWN") == ([], "t NO Unsupported authentication mechanism")
    # Wrong passwords: NO each time (delayed), BYE at the fifth.
    for i in range(4):
        assert r.cmd(f"LOGIN {ALICE} wrong{i}", tag=f"f{i}") == (
            [], f"f{i} NO [AUTHENTICATIONFAILED] Authentication failed")
    r.send(b"f4 LOGIN alice@example.test wrong4\r\n")
    assert r.line(timeout=30) == "f4 NO [AUTHENTICATIONFAILED] Authentication failed"
    assert r.line() == "* BYE Too many authentication failures"
    with pytest.raises((EOFError, OSError)):
        r.line(timeout=5)


def test_authenticate_scram(imap_stack):
    m = connect(imap_stack, login=False)
    import hashlib
    import hmac
    pw = imap_stack.passwords[ALICE].encode()
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={ALICE},r={nonce}"
    state = {}

    def step(challenge):
        if "server_first" not in state:
            state["server_first"] = challenge.decode()
            attrs = dict(a.split("=", 1) for a in state["server_first"].split(","))
            salt = base64.b64decode(attrs["s"])
            salted = hashlib.pbkdf2_hmac("sha256", pw, salt, int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            stored = hashlib.sha256(client_key).digest()
            final_wo = f"c=biws,r={attrs['r']}"
            auth_msg = f"{first_bare},{state['server_first']},{final_wo}".encode()
            sig = hmac.new(stored, auth_msg, "sha256").digest()
            proof = bytes(a ^ b for a, b in zip(client_key, sig))
            server_key = hmac.new(salted, b"Server Key", "sha256").digest()
            state["server_sig"] = base64.b64encode(
                hmac.new(server_key, auth_msg, "sha256").digest()).decode()
            return f"{final_wo},p={base64.b64encode(proof).decode()}".encode()
        assert challenge.decode() == f"v={state['server_sig']}"
        return b""

    calls = {"n": 0}

    def auth(challenge):
        calls["n"] += 1
        if calls["n"] == 1:
            return f"n,,{first_bare}".encode()
        return step(challenge)

    typ, data = m.authenticate("SCRAM-SHA-256", auth)
    assert typ == "OK" and data[0].endswith(b"] Logged in")
    m.logout()


def test_list_create_delete_rename_subscribe(imap_stack):
    m = connect(imap_stack)
    assert m.list() == ("OK", [
        b'(\\HasNoChildren) "/" INBOX', b'(\\HasNoChildren \\Archive) "/" Archive',
        b'(\\HasNoChildren \\Drafts) "/" Drafts', b'(\\HasNoChildren \\Junk) "/" Junk',
        b'(\\HasNoChildren \\Sent) "/" Sent', b'(\\HasNoChildren \\Trash) "/" Trash'])
    assert m.list('""', '""') == ("OK", [b'(\\Noselect) "/" ""'])
    assert m.create("Work/Projects") == ("OK", [b"CREATE completed"])
    assert m.create("Entw&APw-rfe") == ("OK", [b"CREATE completed"])
    assert m.create("Work/Projects")[0] == "NO"
    assert m.list('""', "Work/%") == ("OK", [b'(\\HasNoChildren) "/" Work/Projects'])
    assert m.list('""', "Entw*") == ("OK", [b'(\\HasNoChildren) "/" Entw&APw-rfe'])
    assert m.rename("Work/Projects", "Work/Old") == ("OK", [b"RENAME completed"])
    assert m.subscribe("Work/Old") == ("OK", [b"SUBSCRIBE completed"])
    assert m.lsub('""', "Work/*") == ("OK", [b'() "/" Work/Old'])
    assert m.unsubscribe("Work/Old") == ("OK", [b"UNSUBSCRIBE completed"])
    assert m.delete("Work/Old") == ("OK", [b"DELETE completed"])
    assert m.delete("INBOX") == ("NO", [b"[CANNOT] INBOX cannot be deleted"])
    assert m.delete("Nope") == ("NO", [b"[NONEXISTENT] Mailbox does not exist"])
    for bad in ['"../x"', '"/abs"', '"a//b"', "&Jjo"]:
        typ, _ = m._simple_command("CREATE", bad)
        assert typ == "NO", bad
    typ, data = m.status("INBOX", "(MESSAGES RECENT UIDNEXT UNSEEN SIZE)")
    assert data == [b"INBOX (MESSAGES 0 RECENT 0 UIDNEXT 1 UNSEEN 0 SIZE 0)"]
    m.logout()


def test_append_select_fetch_search(imap_stack):
    m = connect(imap_stack)
    typ, data = m.append("INBOX", r"(\Seen)", '"01-Jul-2003 10:52:37 +0200"', MSG1)
    assert typ == "OK" and data[0].startswith(b"[APPENDUID ") and data[0].endswith(
        b" 1] APPEND completed")
    assert m.append("INBOX", None, None, MSG2)[0] == "OK"
    assert m.append("Nope", None, None, MSG2) == (
        "NO", [b"[TRYCREATE] Mailbox does not exist"])
    typ, data = m.select("INBOX")
    assert data == [b"2"]
    assert m.untagged_responses.get("UIDNEXT") == [b"3"]
    typ, data = m.fetch("1", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
    assert data == [b'1 (UID 1 FLAGS (\\Seen \\Recent) INTERNALDATE "01-Jul-2003 10:52:37 +0200"'
                    b' RFC822.SIZE %d)' % len(MSG1)]
    typ, data = m.fetch("1", "ENVELOPE")
    assert data == [b'1 (ENVELOPE ("Tue, 1 Jul 2003 10:52:37 +0200" "hello there" '
                    b'(("Bob" NIL "bob" "example.test")) (("Bob" NIL "bob" "example.test")) '
                    b'(("Bob" NIL "bob" "example.test")) ((NIL NIL "alice" "example.test")) '
                    b'NIL NIL NIL "<m1@example.test>"))']
    typ, data = m.fetch("2", "BODYSTRUCTURE")
    assert data == [b'2 (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 13 1'
                    b' NIL NIL NIL NIL)("application" "octet-stream" ("name" "a.bin") NIL NIL '
                    b'"base64" 4 NIL ("attachment" ("filename" "a.bin")) NIL NIL) "mixed" '
                    b'("boundary" "b1") NIL NIL NIL))']
    typ, data = m.fetch("2", "(BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[TEXT]<0.4>)")
    assert data[0] == (b"2 (BODY[1] {13}", b"Part one text")
    assert data[1][1] == (b"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
                          b"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
                          b"Content-Transfer-Encoding: base64\r\n\r\n")
    assert data[2] == (b" BODY[TEXT]<0> {4}", b"--b1")
    typ, data = m.fetch("2", "FLAGS")
    assert data == [b"2 (FLAGS (\\Recent))"]
    typ, data = m.fetch("2", "BODY[HEADER.FIELDS (SUBJECT)]")
    assert data[0] == (b"2 (BODY[HEADER.FIELDS (SUBJECT)] {19}", b"Subject: second\r\n\r\n")
    assert data[1] == b" FLAGS (\\Seen \\Recent))"
    typ, data = m.fetch("1:2", "RFC822.SIZE")
    assert data == [b"1 (RFC822.SIZE %d)" % len(MSG1), b"2 (RFC822.SIZE %d)" % len(MSG2)]
    assert m.uid("FETCH", "2", "(FLAGS)") == ("OK", [b"2 (UID 2 FLAGS (\\Seen \\Recent))"])
    with pytest.raises(imaplib.IMAP4.error, match="Invalid message sequence number"):
        m.fetch("3", "FLAGS")
    assert m.search(None, "SUBJECT", "hello") == ("OK", [b"1"])
    assert m.search(None, "FROM", "carol") == ("OK", [b"2"])
    assert m.search(None, "BODY", '"one text"') == ("OK", [b"2"])
    assert m.search(None, "TEXT", "Message-ID") == ("OK", [b"1"])
    assert m.search(None, "OR", "SUBJECT", "second", "NOT", "SEEN") == ("OK", [b"2"])
    assert m.search(None, "HEADER", "Message-ID", "m1@") == ("OK", [b"1"])
    assert m.search(None, "SENTON", "2-Jul-2003") == ("OK", [b"2"])
    assert m.search(None, "LARGER", "300") == ("OK", [b"2"])
    assert m.search("UTF-8", "ALL") == ("OK", [b"1 2"])
    assert m.search(None, "2:*") == ("OK", [b"2"])
    assert m.uid("SEARCH", "UID", "2:*") == ("OK", [b"2"])
    assert m.search("KOI8-R", "ALL")[0] == "NO"
    typ, data = m._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    esearch = m.untagged_responses.pop("ESEARCH")
    assert typ == "OK" and len(esearch) == 1 and esearch[0].startswith(b'(TAG "')
    assert esearch[0].endswith(b'") MIN 1 MAX 2 COUNT 2')
    m.logout()


def test_store_copy_move_expunge(imap_stack):
    m = connect(imap_stack)
    for _ in range(3):
        m.append("INBOX", None, None, MSG1)
    m.select("INBOX")
    assert m.store("1", "+FLAGS", r"(\Flagged)") == ("OK", [b"1 (FLAGS (\\Flagged \\Recent))"])
    assert m.store("1", "-FLAGS.SILENT", r"(\Flagged)") == ("OK", [None])
    assert m.store("2", "FLAGS", r"(\Deleted $Label1)") == (
        "OK", [b"2 (FLAGS (\\Deleted \\Recent $Label1))"])
    typ, data = m.copy("1:2", "Trash")
    assert typ == "OK" and data[0].startswith(b"[COPYUID ") and data[0].endswith(
        b" 1:2 1,2] COPY completed")
    typ, data = m._simple_command("MOVE", "3", "Archive")
    assert typ == "OK" and data == [b"MOVE completed"]
    assert m.untagged_responses.pop("EXPUNGE") == [b"3"]
    assert m.expunge() == ("OK", [b"2"])
    assert m.fetch("1:*", "UID") == ("OK", [b"1 (UID 1)"])
    assert m.status("Trash", "(MESSAGES)") == ("OK", [b"Trash (MESSAGES 2)"])
    m.close()
    m.select("Trash")
    assert m.uid("STORE", "2", "+FLAGS", r"(\Deleted)")[0] == "OK"
    assert m.uid("EXPUNGE", "1:2")[0] == "OK"
    assert m.untagged_responses.pop("EXPUNGE") == [b"2"]
    m.logout()


def test_condstore_enable_id_namespace(imap_stack):
    imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
    m = connect(imap_stack)
    m.append("INBOX", None, None, MSG1)
    assert m._simple_command("ENABLE", "CONDSTORE")[0] == "OK"
    assert m.untagged_responses.pop("ENABLED") == [b"CONDSTORE"]
    assert m._simple_command("ID", '("name" "test")')[0] == "OK"
    assert m.untagged_responses.pop("ID") == [b'("name" "mailstack" "version" "0.1")']
    assert m.namespace() == ("OK", [b'(("" "/")) NIL NIL'])
    m.select("INBOX")
    hms = int(m.untagged_responses["HIGHESTMODSEQ"][0])
    typ, data = m.fetch("1", "(FLAGS)")
    assert data == [b"1 (FLAGS (\\Recent) MODSEQ (%d))" % hms]
    typ, data = m._simple_command("STORE", "1", "(UNCHANGEDSINCE 1)", "+FLAGS", r"(\Seen)")
    assert typ == "OK" and data == [b"[MODIFIED 1] Conditional STORE failed"]
    typ, data = m._simple_command("FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {hms})")
    assert m.untagged_responses.pop("FETCH", None) is None
    m.logout()


def test_bad_input(imap_stack):
    r = Raw(imap_stack, tls=True)
    pw = imap_stack.passwords[ALICE]
    assert r.cmd(f'LOGIN {ALICE} "{pw}"')[1].endswith("Logged in")
    assert r.cmd("FOO") == ([], "t BAD Unknown command")
    assert r.cmd("FETCH 1 FLAGS") == ([], "t BAD No mailbox selected")
    assert r.cmd('SELECT "unterminated')[1] == \
        "t BAD Error in IMAP command: Line end in quoted string"
    assert r.cmd("SELECT (a") == ([], "t BAD Error in IMAP command: Unclosed list")
    deep = "(" * 100 + ")" * 100
    assert r.cmd(f"SEARCH {deep}") == (
        [], "t BAD Error in IMAP command: Lists nested too deeply")
    # A literal too large for a command is refused before it is sent.
    r.send(b"t1 CREATE {999999999}\r\n")
    assert r.line() == "t1 BAD [TOOBIG] Literal too large"
    # An APPEND over APPENDLIMIT: NO [TOOBIG], no continuation.
    r.send(b"t2 APPEND INBOX {99999999999}\r\n")
    assert r.line() == "t2 NO [TOOBIG] Message too large"
    # A non-synchronising literal that is refused is skipped, the session goes on.
    r.send(b"t3 APPEND Nope {5+}\r\nhello\r\n")
    assert r.line() == "t3 NO [TRYCREATE] Mailbox does not exist"
    assert r.cmd("NOOP") == ([], "t OK NOOP completed")
    # NUL in a quoted string; SQL-looking names are only names.
    r.send(b't4 SELECT "a\x00b"\r\n')
    assert r.line() == "t4 BAD Error in IMAP command: NUL byte in quoted string"
    assert r.cmd("SELECT \"x'; DROP TABLE messages; --\"") == (
        [], "t NO [NONEXISTENT] Mailbox does not exist")
    assert r.cmd("SELECT INBOX")[1] == "t OK [READ-WRITE] SELECT completed"
    big = ",".join(str(i) for i in range(1, 20004, 2))
    assert r.cmd(f"FETCH {big} FLAGS") == ([], "t BAD Sequence set has too many ranges")
    assert r.cmd("FETCH 1:* FLAGS") == ([], "t BAD Invalid message sequence number")
    assert r.cmd("SEARCH FROM") == ([], "t BAD Missing search argument")
    assert r.cmd('SEARCH SUBJECT "\') OR 1=1 --"') == (["* SEARCH"], "t OK SEARCH completed")
    r.send(b"x" * 70000 + b"\r\n")
    assert r.line() == "* BAD [TOOBIG] Command line too long"
    assert r.cmd("NOOP") == ([], "t OK NOOP completed")
    r.close()


def test_literals_sync_and_nonsync(imap_stack):
    r = Raw(imap_stack, tls=True)
    pw = imap_stack.passwords[ALICE].encode()
    r.send(b"a LOGIN {%d}\r\n" % len(ALICE))
    assert r.line() == "+ Ready for literal data"
    r.send(ALICE.encode() + b" {%d+}\r\n" % len(pw) + pw + b"\r\n")
    assert r.line().endswith("Logged in")
    r.send(b"b APPEND INBOX (\\Flagged) {%d+}\r\n" % len(MSG1) + MSG1 + b"\r\n")
    assert r.line().endswith(" 1] APPEND completed")
    r.close()


def test_two_sessions_and_idle(imap_stack):
    a = connect(imap_stack)
    b = Raw(imap_stack, tls=True)
    assert b.cmd(f'LOGIN {ALICE} "{imap_stack.passwords[ALICE]}"')[1].endswith("Logged in")
    a.append("INBOX", None, None, MSG1)
    lines, tagged = b.cmd("SELECT INBOX")
    assert "* 1 EXISTS" in lines and tagged == "t OK [READ-WRITE] SELECT completed"
    a.select("INBOX")
    # A flag change by A shows up at B's next command.
    a.store("1", "+FLAGS.SILENT", r"(\Flagged)")
    assert b.cmd("NOOP") == (["* 1 FETCH (FLAGS (\\Flagged \\Recent))"], "t OK NOOP completed")
    # New message while B is in IDLE: EXISTS within a short time.
    b.send(b"i IDLE\r\n")
    assert b.line() == "+ idling"
    start = time.monotonic()
    a.append("INBOX", None, None, MSG2)
    assert b.line(timeout=5) == "* 2 EXISTS"
    assert b.line(timeout=5) == "* 1 RECENT"
    assert time.monotonic() - start < 2.0
    # An expunge by A while B idles.
    a.store("1", "+FLAGS.SILENT", r"(\Deleted)")
    assert b.line(timeout=5) == "* 1 FETCH (FLAGS (\\Flagged \\Deleted \\Recent))"
    a.expunge()
    assert b.line(timeout=5) == "* 1 EXPUNGE"
    b.send(b"DONE\r\n")
    assert b.line() == "i OK IDLE terminated"
    # No EXPUNGE during FETCH: it waits for a command that allows it.
    a.store("1", "+FLAGS.SILENT", r"(\Deleted)")
    a.expunge()
    lines, tagged = b.cmd("FETCH 1 UID")
    assert tagged == "t OK FETCH completed" and not any("EXPUNGE" in ln for ln in lines)
    assert b.cmd("NOOP") == (["* 1 EXPUNGE"], "t OK NOOP completed")
    b.close()
    a.logout()


def test_curl_list_fetch_search_append(imap_stack):
    base = f"imap://127.0.0.1:{imap_stack.port('imap')}"
    common = ["curl", "-s", "--ssl-reqd", "--cacert", imap_stack.path("tls", "cert.pem"),
              "--user", f"{ALICE}:{imap_stack.passwords[ALICE]}", "--max-time", "20"]
    msg = imap_stack.path("msg.eml")
    with open(msg, "wb") as f:
        f.write(MSG1)
    out = subprocess.run(common + ["-T", msg, f"{base}/INBOX"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(common + [f"{base}/"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and '* LIST (\\HasNoChildren) "/" INBOX' in out.stdout
    out = subprocess.run(common + [f"{base}/INBOX;UID=1"], capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == MSG1
    out = subprocess.run(common + ["-X", "SEARCH SUBJECT hello", f"{base}/INBOX"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "* SEARCH 1"
