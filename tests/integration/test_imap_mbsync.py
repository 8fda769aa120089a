"""imapd with mbsync (isync) from Debian: a demo user's folders synced both
ways into a local Maildir over STARTTLS with SCRAM; new messages, flag
changes, deletions and new folders made on either side show up on the
other after the next sync."""
import imaplib
import os
import subprocess

import pytest

ALICE = "alice@example.test"


def msg(subject, body="body text"):
    return (f"From: Bob <bob@example.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\n{body}\r\n").encode()


@pytest.fixture
def imap_stack(stack_factory):
    extra = "[server]\nrun_as = root\n" if os.geteuid() == 0 else None
    s = stack_factory(config_extra=extra)
    s.start("imapd")
    return s


def connect(stack):
    m = imaplib.IMAP4("127.0.0.1", stack.port("imap"), timeout=10)
    m.starttls(ssl_context=stack.ssl_context())
    m.login(ALICE, stack.passwords[ALICE])
    return m


class Maildir:
    """The near side: a tree of Maildir folders as mbsync writes them."""

    def __init__(self, root):
        self.root = root

    def files(self, folder):
        out = {}
        for sub in ("new", "cur"):
            d = os.path.join(self.root, folder, sub)
            if not os.path.isdir(d):
                continue
            for name in sorted(os.listdir(d)):
                path = os.path.join(d, name)
                with open(path, "rb") as f:
                    data = f.read()
                out[path] = data
        return out

    def subjects(self, folder):
        """{subject: maildir flags} of the messages in a folder."""
        found = {}
        for path, data in self.files(folder).items():
            subject = next((ln[9:].decode() for ln in data.split(b"\n")
                            if ln.startswith(b"Subject: ")), "").strip()
            name = os.path.basename(path)
            found[subject] = name.split(":2,", 1)[1] if ":2," in name else ""
        return found

    def find(self, folder, subject):
        for path, data in self.files(folder).items():
            if f"Subject: {subject}\r\n".encode() in data or \
                    f"Subject: {subject}\n".encode() in data:
                return path
        raise AssertionError(f"{subject} not in {folder}")

    def add(self, folder, name, data):
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(self.root, folder, sub), exist_ok=True)
        with open(os.path.join(self.root, folder, "new", name), "wb") as f:
            f.write(data)


def write_rc(stack, tmp):
    rc = os.path.join(tmp, "mbsyncrc")
    root = os.path.join(tmp, "Mail")
    os.makedirs(root, exist_ok=True)
    with open(rc, "w") as f:
        f.write(f"""IMAPAccount alice
Host 127.0.0.1
Port {stack.port("imap")}
User {ALICE}
Pass {stack.passwords[ALICE]}
SSLType STARTTLS
CertificateFile {stack.path("tls", "cert.pem")}

IMAPStore remote
Account alice

MaildirStore local
Path {root}/
Inbox {root}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    return rc, Maildir(root)


def sync(rc):
    out = subprocess.run(["mbsync", "-c", rc, "-a"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def remote_subjects(m, folder):
    """{subject: flags} of a remote folder, via imaplib."""
    typ, data = m.select(f'"{folder}"')
    assert typ == "OK", data
    count = int(data[0])
    found = {}
    if count:
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        for item in data:
            if isinstance(item, tuple):
                flags = item[0].split(b"FLAGS (", 1)[1].split(b")", 1)[0].decode()
                subject = item[1].decode().split(":", 1)[1].strip()
                found[subject] = " ".join(f for f in flags.split() if f != "\\Recent")
    m.close()
    return found


def test_mbsync_two_way(imap_stack, tmp_path):
    m = connect(imap_stack)
    assert m.append("INBOX", r"(\Seen)", None, msg("remote one"))[0] == "OK"
    assert m.append("INBOX", None, None, msg("remote two"))[0] == "OK"
    assert m.create("Work/Projects")[0] == "OK"
    assert m.append("Work/Projects", r"(\Flagged)", None, msg("project plan"))[0] == "OK"
    rc, local = write_rc(imap_stack, str(tmp_path))

    # First sync: every folder and message arrives in the Maildir with its flags.
    sync(rc)
    for folder in ("INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", "Work/Projects"):
        assert os.path.isdir(os.path.join(local.root, folder, "cur")), folder
    assert local.subjects("INBOX") == {"remote one": "S", "remote two": ""}
    assert local.subjects("Work/Projects") == {"project plan": "F"}
    with open(local.find("INBOX", "remote two"), "rb") as f:
        # mbsync stores local line ends (LF) and adds its X-TUID tracking field.
        data = b"".join(ln for ln in f.readlines() if not ln.startswith(b"X-TUID: "))
        assert data == msg("remote two").replace(b"\r\n", b"\n")

    # Near-side changes: a new message, a new folder, a flag, a deletion.
    local.add("INBOX", "1700000000.1.host", msg("local new"))
    local.add("Notes", "1700000000.2.host", msg("note one"))
    path = local.find("INBOX", "remote one")
    assert path.endswith(":2,S")
    os.rename(path, path[:-1] + "FS")  # Maildir flags are kept in ASCII order
    os.unlink(local.find("Work/Projects", "project plan"))
    sync(rc)
    assert remote_subjects(m, "INBOX") == {"remote one": "\\Seen \\Flagged",
                                           "remote two": "", "local new": ""}
    assert remote_subjects(m, "Work/Projects") == {}
    assert remote_subjects(m, "Notes") == {"note one": ""}
    typ, data = m.list('""', "Notes")
    assert data == [b'(\\HasNoChildren) "/" Notes']

    # Far-side changes: a new message, a flag, an expunge, a new folder.
    assert m.append("INBOX", None, None, msg("remote three"))[0] == "OK"
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", '"remote two"')
    assert typ == "OK" and len(data[0].split()) == 1
    assert m.store(data[0].decode(), "+FLAGS", r"(\Answered)")[0] == "OK"
    typ, data = m.search(None, "SUBJECT", '"local new"')
    assert m.store(data[0].decode(), "+FLAGS", r"(\Deleted)")[0] == "OK"
    assert m.expunge()[0] == "OK"
    m.close()
    assert m.create("Travel")[0] == "OK"
    assert m.append("Travel", None, None, msg("tickets"))[0] == "OK"
    sync(rc)
    assert local.subjects("INBOX") == {"remote one": "FS", "remote two": "R",
                                       "remote three": ""}
    assert local.subjects("Travel") == {"tickets": ""}

    # A third sync with no changes changes nothing on either side.
    before = {f: local.subjects(f) for f in ("INBOX", "Travel", "Notes")}
    sync(rc)
    assert {f: local.subjects(f) for f in ("INBOX", "Travel", "Notes")} == before
    assert remote_subjects(m, "INBOX") == {"remote one": "\\Seen \\Flagged",
                                           "remote two": "\\Answered", "remote three": ""}
    m.logout()
