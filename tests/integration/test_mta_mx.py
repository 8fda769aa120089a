"""The mta's next hop from DNS (issue 3): MX records, the implicit MX of a
domain with only an address (RFC 5321 5.1), a null MX (RFC 7505), a domain
that does not exist or has neither MX nor address, a server that fails
(SERVFAIL: retried later), and an MX answer too big for UDP (asked again
over TCP).

Everything runs in a private network namespace whose /etc/resolv.conf (bind
mounted by `ip netns exec` from /etc/netns/NS/resolv.conf) names the stub
DNS server in dnsstub.py on 127.0.0.1:53. Three stacks live there: the sender
for example.test on a free port block, the receiver for remote.test with
port_base 0 (SMTP on 127.0.0.1:25, where mail to an MX always goes) and one
for plain.test, which has no MX but an A record, on 127.0.0.2:25. The test
process itself enters the namespace (setns) to talk to the daemons.
"""
import ctypes
import email
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest

from conftest import BIN, DAEMON_PORTS, Stack, free_port_base, release_port_block
from test_mta_smtp import ALICE, mta_config, mailbox, wait_mailbox, submission_client

CAROL = "carol@remote.test"
DAVE = "dave@plain.test"
CLONE_NEWNET = 0x40000000
HERE = os.path.dirname(os.path.abspath(__file__))

ZONE = {
    "remote.test": {"MX": [[10, "mx.remote.test"]]},
    "mx.remote.test": {"A": ["127.0.0.1"]},
    "plain.test": {"A": ["127.0.0.2"]},
    "nullmx.test": {"MX": [[0, "."]]},
    "noaddr.test": {},
    "servfail.test": {"SERVFAIL": True},
    # 30 exchangers with long names: the answer is over 512 octets, so it
    # comes truncated over UDP and whole over TCP; the preferred one is real.
    "big.test": {"MX": [[5, "mx.remote.test"]] + [
        [50 + i, f"backup-{i:02d}-{'x' * 30}.exchangers.big.test"] for i in range(30)]},
}


def run(*argv, timeout=15):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


class NsStack(Stack):
    """A Stack whose daemons run inside a network namespace (so that they see
    its resolv.conf), optionally on port_base 0 and another listen address."""

    def __init__(self, directory, ns, domain, users, port_base=None, listen="127.0.0.1"):
        self.dir = str(directory)
        os.makedirs(self.dir)
        self.bin = BIN
        self.ns = ns
        self.reserved = port_base is None
        self.port_base = free_port_base() if port_base is None else port_base
        self.listen = listen
        self.procs = {}
        self.logs = {}
        self.passwords = dict(users)
        self.ctl("init", "--dir", self.dir, "--domain", domain,
                 "--port-base", str(self.port_base), check=True)
        self.append_config(mta_config(f"listen = {listen}\n"))
        for address, password in self.passwords.items():
            self.ctl("user", "add", address, input=password + "\n", check=True)

    def start(self, *daemons, wait=True, extra_env=None):
        env = self.env()
        env.update(extra_env or {})
        for name in daemons:
            log = open(self.path(f"{name}.test.log"), "ab")
            self.logs[name] = log
            # ip netns exec execs the daemon: the pid is the daemon's own.
            self.procs[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, os.path.join(self.bin, name), "--dir", self.dir],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait:
            for name in daemons:
                self.wait_ready(name)

    def wait_ready(self, name):
        proc = self.procs[name]
        deadline = time.monotonic() + 15
        pending = [self.port(p) for p in DAEMON_PORTS[name]]
        sock_path = self.path("run", "lmtp.sock")
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n"
                                   + self.log_text(name)[-2000:])
            if name == "mda" and not os.path.exists(sock_path):
                time.sleep(0.05)
                continue
            while pending:
                try:
                    with socket.create_connection((self.listen, pending[0]), timeout=0.5):
                        pending.pop(0)
                except OSError:
                    break
            if not pending:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{name} is not ready")

    def events(self):
        try:
            with open(self.path("log", "events.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class Netns:
    """Enters and leaves a named network namespace for this thread."""

    def __init__(self, name):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.target = os.open(f"/run/netns/{name}", os.O_RDONLY)

    def _set(self, fd):
        if self.libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def enter(self):
        self._set(self.target)

    def leave(self):
        self._set(self.home)

    def close(self):
        os.close(self.target)
        os.close(self.home)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a network namespace and binds port 53 and 25")
    ns = f"ms-mx-{uuid.uuid4().hex[:8]}"
    added = run("ip", "netns", "add", ns)
    if added.returncode != 0:
        pytest.skip(f"ip netns add refused: {added.stderr.strip()}")
    etc = f"/etc/netns/{ns}"
    stacks = []
    stub = None
    netns = None
    entered = False
    try:
        assert run("ip", "-n", ns, "link", "set", "lo", "up").returncode == 0
        os.makedirs(etc)
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
        base = tmp_path_factory.mktemp("mx")
        zone = base / "zone.json"
        zone.write_text(json.dumps(ZONE))
        qlog = base / "queries.log"
        stub = subprocess.Popen(
            ["ip", "netns", "exec", ns, "/usr/bin/python3", os.path.join(HERE, "dnsstub.py"),
             "--addr", "127.0.0.1", "--port", "53", "--zone", str(zone), "--log", str(qlog)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert stub.stdout.readline().strip() == "ready", "the DNS stub did not start"
        netns = Netns(ns)
        netns.enter()
        entered = True
        remote = NsStack(base / "remote", ns, "remote.test", {CAROL: "carol-Secret-3"},
                         port_base=0)
        stacks.append(remote)
        plain = NsStack(base / "plain", ns, "plain.test", {DAVE: "dave-Secret-4"},
                        port_base=0, listen="127.0.0.2")
        stacks.append(plain)
        sender = NsStack(base / "sender", ns, "example.test", {ALICE: "alice-Secret-1"},
                         port_base=None)
        stacks.append(sender)
        for s in stacks:
            s.start("mta", "mda")
        yield {"sender": sender, "remote": remote, "plain": plain, "queries": qlog}
        errors = []
        for s in stacks:
            for err in s.stop():
                errors.append(err)
                for name in ("mta", "mda"):
                    text = s.log_text(name)
                    if "ERROR: AddressSanitizer" in text or "runtime error:" in text:
                        errors.append(f"{name} log:\n{text[-4000:]}")
        stacks.clear()
        assert not errors, "\n".join(errors)
    finally:
        for s in stacks:
            s.stop()
        for s in stacks:
            if s.reserved:
                release_port_block(s.port_base)
        if entered:
            netns.leave()
        if netns is not None:
            netns.close()
        if stub is not None:
            stub.send_signal(signal.SIGTERM)
            try:
                stub.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stub.kill()
                stub.wait()
            stub.stdout.close()
        run("ip", "netns", "delete", ns)
        shutil.rmtree(etc, ignore_errors=True)


def send(stack, rcpt, subject):
    c = submission_client(stack)
    msg = (f"From: {ALICE}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject}@example.test>\r\n\r\nhello\r\n").encode()
    assert c.sendmail(ALICE, [rcpt], msg) == {}
    c.quit()


def wait_event(stack, needle, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in stack.events().splitlines():
            if all(n in line for n in needle):
                return line
        time.sleep(0.1)
    raise AssertionError(f"no event with {needle}:\n{stack.events()[-3000:]}")


def wait_bounce(stack, rcpt, timeout=20.0):
    """The DSN in alice's mailbox about rcpt: (message, delivery-status text)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for body, _ in mailbox(stack, ALICE):
            msg = email.message_from_bytes(body)
            if msg.get_content_type() != "multipart/report":
                continue
            status = msg.get_payload()[1].as_string()
            if f"Final-Recipient: rfc822; {rcpt}" in status:
                return msg, status
        time.sleep(0.1)
    raise AssertionError(f"no bounce for {rcpt} in alice's mailbox")


def queries(world):
    return world["queries"].read_text().splitlines()


def test_mx_record_names_the_next_hop(world):
    send(world["sender"], CAROL, "via-mx")
    body, _ = wait_mailbox(world["remote"], CAROL, 1)[0]
    assert b"Subject: via-mx" in body
    line = wait_event(world["sender"], ["event=attempt", f"rcpt={CAROL}"])
    assert "proto=SMTP hop=mx.remote.test:25 code=250 status=2.0.0" in line, line
    assert "udp remote.test MX" in queries(world)
    assert "udp mx.remote.test A" in queries(world)


def test_domain_without_mx_is_its_own_exchanger(world):
    send(world["sender"], DAVE, "implicit-mx")
    body, _ = wait_mailbox(world["plain"], DAVE, 1)[0]
    assert b"Subject: implicit-mx" in body
    line = wait_event(world["sender"], ["event=attempt", f"rcpt={DAVE}"])
    assert "proto=SMTP hop=plain.test:25 code=250 status=2.0.0" in line, line
    assert "udp plain.test MX" in queries(world)


def test_nonexistent_domain_bounces_with_5_1_2(world):
    rcpt = "someone@nowhere.test"
    send(world["sender"], rcpt, "to-nowhere")
    line = wait_event(world["sender"], ["event=attempt", f"rcpt={rcpt}"])
    assert 'code=550 status=5.1.2 reply="550 5.1.2 nowhere.test: no such domain"' in line, line
    bounce, status = wait_bounce(world["sender"], rcpt)
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    assert "Action: failed" in status
    assert "Status: 5.1.2" in status
    assert "Diagnostic-Code: smtp; 550 5.1.2 nowhere.test: no such domain" in status
    assert "udp nowhere.test MX" in queries(world)


def test_null_mx_bounces_with_5_1_2(world):
    rcpt = "someone@nullmx.test"
    send(world["sender"], rcpt, "to-nullmx")
    line = wait_event(world["sender"], ["event=attempt", f"rcpt={rcpt}"])
    assert ('code=550 status=5.1.2 reply="550 5.1.2 nullmx.test: the domain accepts no mail'
            ' (null MX)"') in line, line
    _, status = wait_bounce(world["sender"], rcpt)
    assert "Status: 5.1.2" in status
    assert "Action: failed" in status


def test_truncated_mx_answer_is_asked_again_over_tcp(world):
    rcpt = "carol@big.test"
    # big.test is not a domain of the receiver: its mta refuses to relay, which
    # proves the preferred exchanger of the 31 was the one tried.
    send(world["sender"], rcpt, "big-answer")
    line = wait_event(world["sender"], ["event=attempt", f"rcpt={rcpt}"])
    assert "proto=SMTP hop=mx.remote.test:25 code=554 status=5.7.1" in line, line
    got = queries(world)
    assert "udp big.test MX" in got and "tcp big.test MX" in got, got


def test_domain_without_mx_or_address_bounces(world):
    rcpt = "someone@noaddr.test"
    send(world["sender"], rcpt, "to-noaddr")
    line = wait_event(world["sender"], ["event=attempt", f"rcpt={rcpt}"])
    assert ('code=550 status=5.1.2 reply="550 5.1.2 noaddr.test: no MX and no address'
            ' records"') in line, line
    _, status = wait_bounce(world["sender"], rcpt)
    assert "Status: 5.1.2" in status
    got = queries(world)
    assert "udp noaddr.test A" in got and "udp noaddr.test AAAA" in got, got


def test_failing_dns_server_defers(world):
    rcpt = "someone@servfail.test"
    send(world["sender"], rcpt, "to-servfail")
    line = wait_event(world["sender"], ["event=attempt", f"rcpt={rcpt}"])
    assert ('code=451 status=4.4.3 reply="451 4.4.3 servfail.test: DNS lookup failed,'
            ' will retry"') in line, line
    listing = world["sender"].ctl("queue").stdout
    assert f"to <{rcpt}>  queued" in listing, listing
    assert "451 4.4.3 servfail.test: DNS lookup failed, will retry" in listing, listing
