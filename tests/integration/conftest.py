"""The integration harness: real daemons in a temporary data directory.

A `Stack` is a data directory made with `mailctl init` on a free block of
ports, with users alice@example.test and bob@example.test (passwords in
`stack.passwords`). `stack.start("mta", "mda", ...)` runs the real daemons
from build-test/bin and waits until they listen; everything is stopped when
the test ends. Nothing here talks to anything but loopback.
"""
import fcntl
import os
import random
import signal
import socket
import ssl
import subprocess
import time

import pytest

BIN = os.environ.get("MAILSTACK_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "bin")
BIN = os.path.abspath(BIN)

# Standard ports, offset by port_base (DESIGN.md, "Ports").
STANDARD_PORTS = {"smtp": 25, "submission": 587, "smtps": 465, "pop3": 110,
                  "pop3s": 995, "imap": 143, "imaps": 993, "lmtp": 24}
DAEMON_PORTS = {"mta": ["smtp", "submission", "smtps"], "mda": [],
                "pop3d": ["pop3", "pop3s"], "imapd": ["imap", "imaps"]}
USERS = {"alice@example.test": "alice-Secret-1", "bob@example.test": "bob-Secret-2"}


def port_block_free(base):
    for std in STANDARD_PORTS.values():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", base + std))
        except OSError:
            return False
        finally:
            s.close()
    return True


# Port blocks handed out, so that two stacks never get the same one: within
# this process by the dict, across processes (parallel runs) by a lock file per
# block, held until the stack is released. Bases are multiples of 100 between
# 11000 and 31700: the standard ports differ by less than 1000 and by no
# multiple of 100, so blocks never overlap, and every port stays below the
# kernel's range for outgoing connections (32768 up), where a client's port
# could take one of ours.
_RESERVED = {}
_RESERVATION_DIR = "/tmp/mailstack-test-ports"


def reserve_port_block(base):
    if base in _RESERVED:
        return False
    os.makedirs(_RESERVATION_DIR, exist_ok=True)
    f = open(os.path.join(_RESERVATION_DIR, f"{base}.lock"), "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _RESERVED[base] = f
    return True


def release_port_block(base):
    f = _RESERVED.pop(base, None)
    if f is not None:
        f.close()


def free_port_base():
    for _ in range(1000):
        base = random.randrange(11000, 31700, 100)
        if port_block_free(base) and reserve_port_block(base):
            return base
    raise RuntimeError("no free block of ports")


def wait_port(port, timeout=15.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def wait_path(path, timeout=15.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode} before creating {path}")
        if os.path.exists(path):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear")


class Stack:
    def __init__(self, directory, config_extra=None, domain="example.test", users=None):
        self.dir = str(directory)
        self.bin = BIN
        self.port_base = free_port_base()
        self.procs = {}
        self.logs = {}
        self.passwords = dict(users if users is not None else USERS)
        self.ctl("init", "--dir", self.dir, "--domain", domain,
                 "--port-base", str(self.port_base), check=True)
        if config_extra:
            self.append_config(config_extra)
        for address, password in self.passwords.items():
            self.ctl("user", "add", address, input=password + "\n", check=True)

    # ---- files and commands ----
    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def append_config(self, text):
        with open(self.path("mailstack.conf"), "a") as f:
            f.write("\n" + text.strip() + "\n")

    def env(self):
        env = dict(os.environ)
        env["MAILSTACK_DIR"] = self.dir
        env.setdefault("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1")
        return env

    def run(self, program, *args, input=None, check=False, timeout=60):
        return subprocess.run([os.path.join(self.bin, program), *args], input=input,
                              capture_output=True, text=True, timeout=timeout,
                              env=self.env(), check=check)

    def ctl(self, *args, input=None, check=False, timeout=60):
        argv = list(args)
        # Subcommands act on this stack's directory unless the test says otherwise.
        return self.run("mailctl", *argv, input=input, check=check, timeout=timeout)

    def port(self, name):
        return self.port_base + STANDARD_PORTS[name]

    # ---- daemons ----
    def start(self, *daemons, wait=True, extra_env=None):
        env = self.env()
        env.update(extra_env or {})
        for name in daemons:
            log = open(self.path(f"{name}.test.log"), "ab")
            self.logs[name] = log
            proc = subprocess.Popen([os.path.join(self.bin, name), "--dir", self.dir],
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
            self.procs[name] = proc
        if wait:
            for name in daemons:
                self.wait_ready(name)

    def wait_ready(self, name):
        proc = self.procs[name]
        if name == "mda":
            wait_path(self.path("run", "lmtp.sock"), proc=proc)
        for port_name in DAEMON_PORTS[name]:
            wait_port(self.port(port_name), proc=proc)

    def kill(self, name, sig=signal.SIGKILL):
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=15)
        return proc.returncode

    def stop(self):
        errors = []
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    errors.append(f"{name} did not stop on SIGTERM")
            # A sanitizer report or crash makes the daemon exit non-zero.
            if proc.returncode not in (0, -signal.SIGTERM):
                errors.append(f"{name} exited with {proc.returncode}")
        self.procs.clear()
        for log in self.logs.values():
            log.close()
        self.logs.clear()
        return errors

    def log_text(self, name):
        try:
            with open(self.path(f"{name}.test.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # ---- clients ----
    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.path("tls", "cert.pem"))
        ctx.check_hostname = False
        return ctx


@pytest.fixture
def stack_factory(tmp_path):
    """Makes stacks (several for relay tests); stops them all at the end and
    fails the test if a daemon crashed or a sanitizer complained."""
    made = []

    def make(name="stack", **kwargs):
        d = tmp_path / name
        d.mkdir()
        s = Stack(d, **kwargs)
        made.append(s)
        return s

    yield make
    errors = []
    for s in made:
        stop_errors = s.stop()
        release_port_block(s.port_base)
        for err in stop_errors:
            errors.append(err)
            for name in ("mta", "mda", "pop3d", "imapd"):
                text = s.log_text(name)
                if "ERROR: AddressSanitizer" in text or "runtime error:" in text:
                    errors.append(f"{name} log:\n{text[-4000:]}")
    assert not errors, "\n".join(errors)


@pytest.fixture
def stack(stack_factory):
    return stack_factory()
