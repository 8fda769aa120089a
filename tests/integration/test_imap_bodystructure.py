"""The BODYSTRUCTURE corpus: real-world MIME shapes in bodystructure/*.eml
(stored with LF line ends, appended with CRLF), each with the FETCH
BODYSTRUCTURE and BODY responses written by hand from RFC 3501 7.4.2 in
*.expected. Also the parts of a few of them fetched by section number, to
check that the octet counts match what BODY[n] returns."""
import glob
import os

import pytest

from test_imap import ALICE, Raw

HERE = os.path.join(os.path.dirname(__file__), "bodystructure")
CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(HERE, "*.eml")))


@pytest.fixture(scope="module")
def corpus_session(tmp_path_factory):
    """One stack for the whole corpus: every message appended once, in order."""
    from conftest import Stack
    d = tmp_path_factory.mktemp("bodystructure") / "stack"
    d.mkdir()
    stack = Stack(d, config_extra="[server]\nrun_as = root\n" if os.geteuid() == 0 else None)
    stack.start("imapd")
    r = Raw(stack, tls=True)
    assert r.cmd(f'LOGIN {ALICE} "{stack.passwords[ALICE]}"')[1].endswith("Logged in")
    for name in CASES:
        with open(os.path.join(HERE, name + ".eml"), "rb") as f:
            data = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        r.send(b"a APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
        assert r.line().endswith("] APPEND completed"), name
    lines, tagged = r.cmd("EXAMINE INBOX")
    assert tagged == "t OK [READ-ONLY] EXAMINE completed"
    assert f"* {len(CASES)} EXISTS" in lines
    yield stack, r
    r.close()
    errors = stack.stop()
    assert not errors, errors


def literal_reply(r, command):
    """Sends a FETCH of one section; returns the literal's bytes."""
    r.send(f"s {command}\r\n".encode())
    head = r.line()
    assert head.endswith("}"), head
    size = int(head.rsplit("{", 1)[1][:-1])
    while len(r.buf) < size + 2:
        chunk = r.sock.recv(65536)
        assert chunk, "connection closed"
        r.buf += chunk
    data, r.buf = r.buf[:size], r.buf[size:]
    assert r.line() == ")"
    assert r.line() == "s OK FETCH completed"
    return data


@pytest.mark.parametrize("name", CASES)
def test_bodystructure_corpus(corpus_session, name):
    stack, r = corpus_session
    seq = CASES.index(name) + 1
    with open(os.path.join(HERE, name + ".expected")) as f:
        expected = [ln for ln in f.read().splitlines() if ln]
    assert len(expected) == 2 and expected[0].startswith("BODYSTRUCTURE (") and \
        expected[1].startswith("BODY (")
    assert r.cmd(f"FETCH {seq} BODYSTRUCTURE") == (
        [f"* {seq} FETCH ({expected[0]})"], "t OK FETCH completed")
    assert r.cmd(f"FETCH {seq} BODY") == (
        [f"* {seq} FETCH ({expected[1]})"], "t OK FETCH completed")
    # Both at once, from the cache this time.
    assert r.cmd(f"FETCH {seq} (BODY BODYSTRUCTURE)") == (
        [f"* {seq} FETCH ({expected[1]} {expected[0]})"], "t OK FETCH completed")


# (message, section, exact bytes): sizes here match the BODYSTRUCTURE counts.
SECTIONS = [
    ("02-mixed-alternative-related", "1.1", b"Spring offers: 20% off =E2=82=AC items."),
    ("02-mixed-alternative-related", "1.2.1",
     b'<html><body><p>Spring offers</p>\r\n<img src="cid:logo@shop.example"></body></html>'),
    ("02-mixed-alternative-related", "1.2.2.MIME",
     b"Content-Type: image/png\r\nContent-ID: <logo@shop.example>\r\n"
     b"Content-Disposition: inline; filename=\"logo.png\"\r\n"
     b"Content-Transfer-Encoding: base64\r\n\r\n"),
    ("02-mixed-alternative-related", "2", b"JVBERi0xLjQKJcfsj6IKJSVFT0YK"),
    ("03-message-rfc822", "2.1", b"Notes in plain text.\r\nSecond line."),
    ("03-message-rfc822", "2.2", b"<p>Notes in HTML.</p>"),
    ("03-message-rfc822", "2.HEADER.FIELDS (SUBJECT FROM)",
     b"From: Carol <carol@example.test>\r\nSubject: meeting notes\r\n\r\n"),
    ("04-encoded-words", "3.TEXT", b"inner body"),
    ("04-encoded-words", "3.1", b"inner body"),
    ("07-missing-close-delimiter", "3", b"<p>cut off\r\n"),
    ("09-digest", "1.1", b"first message"),
    ("09-digest", "1.HEADER", b"From: one@example.test\r\nSubject: first\r\n\r\n"),
    ("01-plain-no-mime", "1", b"A message without MIME-Version or Content-Type is\r\n"
     b"text/plain; charset=us-ascii (RFC 2045 5.2).\r\n"),
]


@pytest.mark.parametrize("name,section,data", SECTIONS)
def test_bodystructure_sections(corpus_session, name, section, data):
    stack, r = corpus_session
    seq = CASES.index(name) + 1
    assert literal_reply(r, f"FETCH {seq} BODY.PEEK[{section}]") == data
