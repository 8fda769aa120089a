"""No password reaches the transcript, however the client sends it."""
import socket
import time


def imap_raw(stack):
    sock = stack.ssl_context().wrap_socket(
        socket.create_connection(("127.0.0.1", stack.port("imaps")), timeout=15))
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    return sock, f


def read_tagged(f, tag):
    while True:
        line = f.readline()
        assert line, "connection closed"
        if line.startswith(tag + b" "):
            return line


def transcript(stack):
    time.sleep(0.2)
    with open(stack.path("log", "transcript.log"), errors="replace") as fh:
        return fh.read()


def test_imap_login_password_as_literal_is_masked(stack):
    stack.start("imapd")
    user, password = "bob@example.test", stack.passwords["bob@example.test"]
    # A synchronising literal: the password follows the continuation.
    sock, f = imap_raw(stack)
    sock.sendall(b"a1 LOGIN " + user.encode() + b" {%d}\r\n" % len(password))
    assert f.readline().startswith(b"+ ")
    sock.sendall(password.encode() + b"\r\n")
    assert read_tagged(f, b"a1").startswith(b"a1 OK")
    sock.close()
    # A non-synchronising literal (LITERAL+), user name and password both literals.
    sock, f = imap_raw(stack)
    sock.sendall(b"a2 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (
        len(user), user.encode(), len(password), password.encode()))
    assert read_tagged(f, b"a2").startswith(b"a2 OK")
    sock.close()
    text = transcript(stack)
    assert password not in text
    assert text.count('line="****"') + text.count("line=****") >= 2
    # The quoted form is masked as well.
    sock, f = imap_raw(stack)
    sock.sendall(b'a3 LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
    assert read_tagged(f, b"a3").startswith(b"a3 OK")
    sock.close()
    assert password not in transcript(stack)
