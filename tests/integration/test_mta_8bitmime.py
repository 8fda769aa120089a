"""RFC 6152 3: an 8BITMIME message relayed to a next hop that does not
advertise 8BITMIME is converted to quoted-printable when it is a single part,
and bounced with 5.6.3 when it cannot be converted."""
import email
import quopri
import socket
import threading
import time

from test_mta_smtp import ALICE, make_stack, wait_mailbox
from test_trace import wait_event


class SevenBitServer(threading.Thread):
    """A minimal SMTP server whose EHLO offers no 8BITMIME; keeps each message."""

    def __init__(self):
        super().__init__(daemon=True)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.mail_from = []
        self.messages = []

    def run(self):
        for _ in range(4):  # bounded: a test needs one or two sessions
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(15)
                self.session(conn.makefile("rwb", buffering=0))

    def session(self, f):
        f.write(b"220 seven.test ESMTP\r\n")
        data = None
        for _ in range(1000):
            line = f.readline()
            if not line:
                return
            if data is not None:
                if line == b".\r\n":
                    self.messages.append(b"".join(data))
                    data = None
                    f.write(b"250 2.0.0 Ok\r\n")
                else:
                    data.append(line[1:] if line.startswith(b".") else line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                f.write(b"250-seven.test\r\n250-PIPELINING\r\n250 SIZE 10000000\r\n")
            elif verb == b"MAIL":
                self.mail_from.append(line)
                f.write(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                f.write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                data = []
                f.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                f.write(b"221 2.0.0 Bye\r\n")
                return
            else:
                f.write(b"250 2.0.0 Ok\r\n")

    def close(self):
        self.listener.close()


def relay_8bit(stack, raw_message):
    c = socket.create_connection(("127.0.0.1", stack.port("smtp")), timeout=15)
    f = c.makefile("rwb", buffering=0)

    def reply():
        while True:
            line = f.readline()
            if line[3:4] != b"-":
                return line

    assert reply().startswith(b"220")
    for cmd, want in ((b"EHLO client.test", b"250"),
                      (b"MAIL FROM:<%s> BODY=8BITMIME" % ALICE.encode(), b"250"),
                      (b"RCPT TO:<dave@seven.test>", b"250"), (b"DATA", b"354")):
        f.write(cmd + b"\r\n")
        assert reply().startswith(want)
    f.write(raw_message + b".\r\n")
    line = reply()
    f.write(b"QUIT\r\n")
    c.close()
    assert line.startswith(b"250"), line
    return line.split()[-1].decode()


def wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_single_part_is_converted_to_quoted_printable(stack_factory):
    server = SevenBitServer()
    server.start()
    s = make_stack(stack_factory, f"[routes]\nseven.test = 127.0.0.1:{server.port}\n"
                                  "[smtp]\ntrusted_networks = 127.0.0.0/8\n")
    s.start("mta", "mda")
    text = "Grüße aus Köln, café crème\r\n"
    raw = (b"From: alice@example.test\r\nTo: dave@seven.test\r\nSubject: umlauts\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + text.encode())
    relay_8bit(s, raw)
    assert wait_for(lambda: server.messages)
    server.close()
    got = server.messages[0]
    assert b"BODY=8BITMIME" not in server.mail_from[0]
    assert all(b < 0x80 for b in got)
    msg = email.message_from_bytes(got)
    assert msg.get_all("Content-Transfer-Encoding") == ["quoted-printable"]
    assert msg["Subject"] == "umlauts"
    body = got.split(b"\r\n\r\n", 1)[1]
    assert quopri.decodestring(body).decode() == text


def test_multipart_8bit_bounces_with_5_6_3(stack_factory):
    server = SevenBitServer()
    server.start()
    s = make_stack(stack_factory, f"[routes]\nseven.test = 127.0.0.1:{server.port}\n"
                                  "[smtp]\ntrusted_networks = 127.0.0.0/8\n")
    s.start("mta", "mda")
    raw = (b"From: alice@example.test\r\nTo: dave@seven.test\r\nSubject: parts\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
           b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße\r\n".encode() +
           b"--b1--\r\n")
    lid = relay_8bit(s, raw)
    events = wait_event(s, lid, "bounced")
    bounced = [e for e in events if e["event"] == "bounced"][0]
    assert bounced["status"] == "5.6.3"
    assert "does not support 8BITMIME" in bounced["reply"]
    server.close()
    assert server.messages == []
    # the bounce goes back to alice
    msgs = wait_mailbox(s, ALICE, 1)
    report = email.message_from_bytes(msgs[0][0])
    assert "Status: 5.6.3" in report.get_payload()[1].as_string()
