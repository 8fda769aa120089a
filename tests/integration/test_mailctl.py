"""mailctl (issue 2): the command table, init, users and aliases, config,
status, and `up` supervising the real daemons.

Every message is checked to the letter. `up` runs as a child of the test with
its stdout read by a thread, so every wait is bounded in time.
"""
import os
import poplib
import pwd
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BIN, DAEMON_PORTS, Stack

MAILCTL = os.path.join(BIN, "mailctl")


def mailctl(*args, input=None, env=None, cwd=None, timeout=60):
    full_env = dict(os.environ)
    full_env.pop("MAILSTACK_DIR", None)
    full_env.setdefault("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1")
    if env:
        full_env.update(env)
    return subprocess.run([MAILCTL, *args], input=input, capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# ---- the command table ----

def test_help_lists_every_command():
    for argv in (["help"], ["--help"]):
        r = mailctl(*argv)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "usage: mailctl [--dir DIR] COMMAND [ARGS...]"
        names = [line.split()[0] for line in lines if line.startswith("  ")]
        for name in ("init", "user", "alias", "up", "status", "config", "mua", "help"):
            assert name in names, r.stdout
        assert ("  up         start mta, mda, pop3d and imapd, supervise them until Ctrl-C"
                in lines)


def test_no_command_prints_usage_and_fails():
    r = mailctl()
    assert r.returncode == 1
    assert r.stderr.startswith("usage: mailctl [--dir DIR] COMMAND [ARGS...]\n")


def test_unknown_command_says_so():
    r = mailctl("frobnicate")
    assert r.returncode == 1
    assert r.stderr == "mailctl: unknown command 'frobnicate' (try 'mailctl help')\n"
    assert r.stdout == ""


def test_dir_without_value():
    r = mailctl("status", "--dir")
    assert r.returncode == 1
    assert r.stderr == "mailctl: --dir needs a directory\n"


# ---- init ----

def test_init_creates_everything_with_the_right_modes(tmp_path):
    d = tmp_path / "data"
    r = mailctl("init", "--dir", str(d), "--domain", "mail.test", "--port-base", "23000",
                "--hostname", "mx.mail.test", "--demo")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert f"created data directory {d}" in out
    assert f"created config {d}/mailstack.conf" in out
    assert (f"created certificate {d}/tls/cert.pem (self-signed for mx.mail.test, localhost, "
            "127.0.0.1 and ::1)") in out
    assert f"created key {d}/tls/key.pem" in out
    assert f"created user directory {d}/users.sqlite" in out
    for sub in ("mail", "run", "log"):
        assert f"created {sub} directory {d}/{sub}" in out
    assert "created domain mail.test" in out
    assert out[-1] == f"ready: start the daemons with 'mailctl up --dir {d}'"

    assert mode(d) == 0o700
    for sub in ("mail", "run", "log", "tls"):
        assert (d / sub).is_dir() and mode(d / sub) == 0o700
    assert mode(d / "tls" / "key.pem") == 0o600
    assert mode(d / "mailstack.conf") == 0o600
    assert mode(d / "demo-credentials") == 0o600
    assert (d / "users.sqlite").is_file()

    # The config is complete (every key), carries the choices and an example route.
    conf = (d / "mailstack.conf").read_text()
    assert "\nport_base = 23000\n" in conf
    assert "\nhostname = mx.mail.test\n" in conf
    ref = mailctl("config", "reference").stdout
    keys = re.findall(r"^\| `([a-z0-9_]+)\.([a-z0-9_]+)` \|", ref, re.M)
    assert len(keys) > 20
    for section, key in keys:
        assert f"\n[{section}]\n" in conf
        assert re.search(rf"^{key} = ", conf, re.M), key
    assert re.search(r"^\[routes\]\n(#.*\n)+# example\.org = 127\.0\.0\.1:20025\n", conf, re.M)
    assert mailctl("config", "check", "--dir", str(d)).stdout == f"{d}/mailstack.conf: ok\n"

    # --demo: the passwords are printed once and written to demo-credentials.
    creds = dict(line.split(" ") for line in (d / "demo-credentials").read_text().splitlines())
    assert sorted(creds) == ["alice@example.test", "bob@example.test"]
    for address, password in creds.items():
        assert re.fullmatch(r"[A-Za-z0-9]{16}", password)
        assert f"created user {address} password {password}" in out
        local = address.split("@")[0]
        assert (d / "mail" / "example.test" / f"{local}.sqlite").is_file()

    # The certificate names the host and is self-signed.
    text = subprocess.run(["openssl", "x509", "-in", str(d / "tls" / "cert.pem"), "-noout",
                           "-ext", "subjectAltName"], capture_output=True, text=True).stdout
    assert "DNS:mx.mail.test" in text and "DNS:localhost" in text
    assert "IP Address:127.0.0.1" in text


def test_init_again_keeps_everything(tmp_path):
    d = tmp_path / "data"
    first = mailctl("init", "--dir", str(d), "--demo")
    assert first.returncode == 0, first.stderr
    creds = (d / "demo-credentials").read_text()
    cert = (d / "tls" / "cert.pem").read_bytes()
    with open(d / "mailstack.conf", "a") as f:
        f.write("\n# my own note\n")
    conf = (d / "mailstack.conf").read_text()
    assert mailctl("user", "add", "carol@example.test", "--dir", str(d),
                   input="carol-pw\n").returncode == 0

    again = mailctl("init", "--dir", str(d), "--demo", "--port-base", "30000")
    assert again.returncode == 0, again.stderr
    out = again.stdout.splitlines()
    assert f"kept    data directory {d} (already exists)" in out
    assert f"kept    config {d}/mailstack.conf (already exists)" in out
    assert (f"        (--port-base and --hostname apply only to a new config; edit "
            f"{d}/mailstack.conf to change them)") in out
    assert f"kept    certificate {d}/tls/cert.pem (already exists)" in out
    assert f"kept    key {d}/tls/key.pem (already exists)" in out
    assert f"kept    user directory {d}/users.sqlite (already exists)" in out
    assert "kept    domain example.test (already local)" in out
    assert "kept    user alice@example.test (already exists; password unchanged)" in out
    assert "kept    user bob@example.test (already exists; password unchanged)" in out
    assert not [line for line in out if line.startswith("created")]
    assert (d / "demo-credentials").read_text() == creds
    assert (d / "tls" / "cert.pem").read_bytes() == cert
    assert (d / "mailstack.conf").read_text() == conf
    users = mailctl("user", "list", "--dir", str(d)).stdout
    assert "carol@example.test" in users


def test_init_refuses_half_a_certificate(tmp_path):
    d = tmp_path / "data"
    assert mailctl("init", "--dir", str(d)).returncode == 0
    key = (d / "tls" / "key.pem").read_bytes()
    os.unlink(d / "tls" / "cert.pem")
    r = mailctl("init", "--dir", str(d))
    assert r.returncode == 1
    assert r.stderr == (f"mailctl: {d}/tls/key.pem exists but {d}/tls/cert.pem is missing; "
                        "restore it, or remove both to make a new self-signed pair\n")
    assert (d / "tls" / "key.pem").read_bytes() == key


def test_init_bad_arguments(tmp_path):
    d = str(tmp_path / "data")
    r = mailctl("init", "--dir", d, "--port-base", "70000")
    assert (r.returncode, r.stderr) == (1, "mailctl: init: bad port base '70000' (0 to 64540)\n")
    r = mailctl("init", "--dir", d, "--bogus")
    assert r.returncode == 1
    assert r.stderr.startswith("mailctl: init: unknown argument '--bogus'\n")
    r = mailctl("init", "--dir", d, "--domain")
    assert (r.returncode, r.stderr) == (1, "mailctl: init: --domain needs a value\n")
    assert not os.path.exists(d)


def test_data_directory_from_dir_env_or_var(tmp_path):
    d = tmp_path / "envdir"
    r = mailctl("init", env={"MAILSTACK_DIR": str(d)})
    assert r.returncode == 0 and (d / "mailstack.conf").is_file()
    # --dir anywhere on the line wins over the environment.
    other = tmp_path / "other"
    r = mailctl("init", "--domain", "x.test", "--dir", str(other), env={"MAILSTACK_DIR": str(d)})
    assert r.returncode == 0 and (other / "mailstack.conf").is_file()
    # Neither: ./var, made absolute.
    r = mailctl("init", cwd=str(tmp_path))
    assert r.returncode == 0
    assert f"created data directory {tmp_path}/var" in r.stdout.splitlines()


# ---- users and aliases ----

def test_user_add_list_passwd_quota_del(stack):
    r = stack.ctl("user", "add", "carol@example.test", input="carol-pw-1\n")
    assert r.returncode == 0, r.stderr
    mailbox = stack.path("mail", "example.test", "carol.sqlite")
    assert r.stdout == f"added carol@example.test (mailbox {mailbox})\n"
    assert os.path.isfile(mailbox)

    r = stack.ctl("user", "add", "carol@example.test", input="again\n")
    assert (r.returncode, r.stderr) == (1, "mailctl: user carol@example.test already exists\n")
    r = stack.ctl("user", "add", "nobody-at-all", input="x\n")
    assert (r.returncode, r.stderr) == (
        1, "mailctl: 'nobody-at-all' is not an address of the form user@domain\n")
    r = stack.ctl("user", "add", "dave@example.test", input="")
    assert (r.returncode, r.stderr) == (1, "mailctl: no password given (standard input ended)\n")
    r = stack.ctl("user", "add", "dave@example.test", input="\n")
    assert (r.returncode, r.stderr) == (1, "mailctl: the password is empty\n")

    lines = stack.ctl("user", "list").stdout.splitlines()
    assert lines[0].split() == ["ADDRESS", "QUOTA-BYTES", "QUOTA-MSGS", "USED-BYTES",
                                "USED-MSGS"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert sorted(rows) == ["alice@example.test", "bob@example.test", "carol@example.test"]
    assert rows["carol@example.test"] == ["unlimited", "unlimited", "0", "0"]

    r = stack.ctl("user", "quota", "carol@example.test", "10M", "500")
    assert r.stdout == "quota of carol@example.test: 10485760 bytes, 500 messages\n"
    r = stack.ctl("user", "quota", "carol@example.test", "2K")
    assert r.stdout == "quota of carol@example.test: 2048 bytes, 500 messages\n"
    r = stack.ctl("user", "quota", "carol@example.test", "lots")
    assert (r.returncode, r.stderr) == (
        1, "mailctl: bad quota 'lots' (bytes, e.g. 100M; 0 = unlimited)\n")
    rows = {line.split()[0]: line.split()[1:]
            for line in stack.ctl("user", "list").stdout.splitlines()[1:]}
    assert rows["carol@example.test"] == ["2048", "500", "0", "0"]

    r = stack.ctl("user", "passwd", "carol@example.test", input="carol-pw-2\n")
    assert (r.returncode, r.stdout) == (0, "changed the password of carol@example.test\n")
    r = stack.ctl("user", "passwd", "zed@example.test", input="x\n")
    assert (r.returncode, r.stderr) == (1, "mailctl: no such user zed@example.test\n")

    r = stack.ctl("user", "del", "carol@example.test")
    assert (r.returncode, r.stdout) == (
        0, f"deleted carol@example.test (mailbox kept at {mailbox})\n")
    r = stack.ctl("user", "del", "carol@example.test")
    assert (r.returncode, r.stderr) == (1, "mailctl: no such user carol@example.test\n")
    assert "carol@example.test" not in stack.ctl("user", "list").stdout
    # Adding her again finds the old mailbox; --purge removes it.
    assert stack.ctl("user", "add", "carol@example.test", input="pw\n").returncode == 0
    r = stack.ctl("user", "del", "carol@example.test", "--purge")
    assert r.stdout == "deleted carol@example.test and its mailbox\n"
    assert not os.path.exists(mailbox)


def test_user_usage_errors(stack):
    r = stack.ctl("user")
    assert r.returncode == 1 and r.stderr.startswith("usage:\n  mailctl user add ADDRESS\n")
    r = stack.ctl("user", "rename", "a@b.test")
    assert r.returncode == 1
    assert r.stderr.startswith("mailctl: unknown user command 'rename'\n")
    r = stack.ctl("user", "quota", "alice@example.test")
    assert (r.returncode, r.stderr) == (
        1, "mailctl: usage: mailctl user quota ADDRESS BYTES [MESSAGES]\n")


def test_alias_add_list_del(stack):
    r = stack.ctl("alias", "add", "postmaster@example.test", "alice@example.test")
    assert (r.returncode, r.stdout) == (
        0, "added alias postmaster@example.test -> alice@example.test\n")
    r = stack.ctl("alias", "add", "team@example.test", "alice@example.test")
    assert r.returncode == 0
    r = stack.ctl("alias", "add", "team@example.test", "bob@example.test")
    assert r.returncode == 0
    listing = stack.ctl("alias", "list").stdout.splitlines()
    assert sorted(listing) == ["postmaster@example.test -> alice@example.test",
                               "team@example.test -> alice@example.test",
                               "team@example.test -> bob@example.test"]
    r = stack.ctl("alias", "del", "team@example.test", "bob@example.test")
    assert r.stdout == "deleted alias team@example.test -> bob@example.test\n"
    r = stack.ctl("alias", "del", "team@example.test", "bob@example.test")
    assert (r.returncode, r.stderr) == (
        1, "mailctl: no such alias team@example.test -> bob@example.test\n")
    r = stack.ctl("alias", "del", "postmaster@example.test")
    assert r.stdout == "deleted alias postmaster@example.test\n"
    r = stack.ctl("alias", "del", "postmaster@example.test")
    assert (r.returncode, r.stderr) == (1, "mailctl: no such alias postmaster@example.test\n")
    assert stack.ctl("alias", "list").stdout == "team@example.test -> alice@example.test\n"


def test_commands_on_a_missing_data_directory(tmp_path):
    d = tmp_path / "nowhere"
    for args in (["user", "list"], ["config"], ["status"], ["up"]):
        r = mailctl(*args, "--dir", str(d))
        assert r.returncode == 1, args
        assert r.stderr == (f"mailctl: data directory {d} does not exist "
                            f"(create it with 'mailctl init --dir {d}')\n"), args


# ---- config ----

def test_config_prints_the_effective_config(stack):
    r = stack.ctl("config")
    assert r.returncode == 0
    assert r.stdout.startswith(f"# effective configuration (file: {stack.path('mailstack.conf')})")
    assert f"\nport_base = {stack.port_base}\n" in r.stdout


def test_config_check_names_file_line_key(stack):
    conf = stack.path("mailstack.conf")
    lines = open(conf).read().count("\n")
    stack.append_config("[smtp]\nmax_sise = 10")
    r = stack.ctl("config", "check")
    assert r.returncode == 1
    # append_config adds a blank line, then [smtp] at lines+2, the key at lines+3.
    assert r.stderr == f"mailctl: {conf}:{lines + 3}: unknown key 'smtp.max_sise'\n"


def test_config_check_bad_value(stack):
    conf = stack.path("mailstack.conf")
    lines = open(conf).read().count("\n")
    stack.append_config("[smtp]\nmax_recipients = many")
    r = stack.ctl("config", "check")
    assert r.returncode == 1
    assert r.stderr == (f"mailctl: {conf}:{lines + 3}: bad value for smtp.max_recipients: "
                        "'many' is not a number\n")


def test_config_check_missing_certificate(stack):
    os.unlink(stack.path("tls", "cert.pem"))
    r = stack.ctl("config", "check")
    assert r.returncode == 1
    cert = stack.path("tls", "cert.pem")
    assert r.stderr == f"mailctl: cannot read certificate {cert}: No such file or directory\n"


# ---- up and status ----

def test_status_without_daemons(stack):
    st = stack.ctl("status")
    assert st.returncode == 3
    lines = st.stdout.splitlines()
    assert lines[0] == f"data directory {stack.dir}"
    assert lines[1] == "up       not running"
    assert "mta      not running" in lines
    assert f"           submission  {'127.0.0.1:%d' % stack.port('submission'):<40} does not answer" in lines
    assert lines[-2:] == ["queue    empty (no queue yet)", "faults   none"]
    assert stack.ctl("fault", "set", "mda", "tempfail").returncode == 0
    assert stack.ctl("status").stdout.splitlines()[-1] == "faults   mda tempfail"


class Up:
    """`mailctl up` as a child: stdout lines arrive through a queue."""

    def __init__(self, stack):
        self.stack = stack
        self.err_path = stack.path("up.stderr")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([MAILCTL, "up", "--dir", stack.dir],
                                     stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=stack.env())
        self.lines = []
        self.queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def wait_line(self, prefix, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r}; stdout {self.lines}, "
                             f"stderr {self.stderr()[-3000:]}")

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.err.close()
        return self.proc.returncode

    def rest(self, timeout=10):
        """Lines printed after the last wait, until stdout closes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
        return self.lines


def daemon_pid(stack, name):
    try:
        with open(stack.path("run", f"{name}.pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def expected_table(stack):
    rows = [f"{'DAEMON':<7} {'PROTOCOL':<11} {'LISTENS ON':<40} TLS",
            f"{'mda':<7} {'lmtp':<11} {stack.path('run', 'lmtp.sock'):<40} none"]
    tls = {"smtp": "STARTTLS", "submission": "STARTTLS", "smtps": "implicit",
           "pop3": "STARTTLS (STLS)", "pop3s": "implicit", "imap": "STARTTLS",
           "imaps": "implicit"}
    for daemon in ("mta", "pop3d", "imapd"):
        for proto in DAEMON_PORTS[daemon]:
            where = f"127.0.0.1:{stack.port(proto)}"
            rows.append(f"{daemon:<7} {proto:<11} {where:<40} {tls[proto]}")
    return rows


def test_up_table_restart_after_sigkill_and_stop(stack):
    up = Up(stack)
    try:
        first = up.wait_line("DAEMON")
        for _ in range(len(expected_table(stack)) - 1):
            up.wait_line("")
        assert up.lines[-len(expected_table(stack)):] == expected_table(stack)
        assert first == expected_table(stack)[0]
        assert up.wait_line("mailstack is up") == (
            f"mailstack is up (data directory {stack.dir}); Ctrl-C stops it.")
        with open(stack.path("run", "mailctl.pid")) as f:
            assert int(f.read()) == up.proc.pid

        # status sees everything running and answering.
        st = stack.ctl("status")
        assert st.returncode == 0, st.stdout + st.stderr
        assert f"up       running (pid {up.proc.pid})" in st.stdout.splitlines()
        for name in ("mta", "mda", "pop3d", "imapd"):
            assert f"{name:<8} running (pid {daemon_pid(stack, name)})" in st.stdout
        assert "does not answer" not in st.stdout
        assert "queue    0 messages" in st.stdout.splitlines()

        # SIGKILL the mta: it comes back with a new pid and answers again.
        old = daemon_pid(stack, "mta")
        assert old and alive(old)
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 60
        new = old
        while time.monotonic() < deadline:
            new = daemon_pid(stack, "mta")
            if new != old and alive(new) and answers(stack.port("submission")):
                break
            time.sleep(0.1)
        assert new != old and alive(new), up.stderr()[-3000:]
        for proto in DAEMON_PORTS["mta"]:
            assert answers(stack.port(proto))
        log = up.stderr()
        assert re.search(r'msg="daemon died; restarting" daemon=mta pid=%d '
                         r'how="killed by signal 9 \(SIGKILL\)" uptime=\d+s restart_in=1s'
                         % old, log), log[-3000:]
        deadline = time.monotonic() + 10
        while 'msg="daemon restarted" daemon=mta' not in log and time.monotonic() < deadline:
            time.sleep(0.1)
            log = up.stderr()
        assert re.search(r'msg="daemon restarted" daemon=mta pid=%d restarts=1' % new, log)

        # A second death doubles the backoff.
        os.kill(new, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if re.search(r'msg="daemon died; restarting" daemon=mta pid=%d .* restart_in=2s'
                         % new, up.stderr()):
                break
            time.sleep(0.1)
        assert re.search(r'msg="daemon died; restarting" daemon=mta pid=%d .* restart_in=2s'
                         % new, up.stderr())
        while time.monotonic() < deadline:
            if 'msg="daemon restarted" daemon=mta' in up.stderr().split(f"pid={new}", 1)[-1]:
                break
            time.sleep(0.1)
        assert answers(stack.port("smtp"))

        pids = {name: daemon_pid(stack, name) for name in ("mta", "mda", "pop3d", "imapd")}
    finally:
        rc = up.stop(signal.SIGTERM)
    assert rc == 0, up.stderr()[-3000:]
    assert up.rest()[-1] == "mailstack stopped"
    for name, pid in pids.items():
        assert not alive(pid), name
    for name in ("mta", "pop3d", "imapd"):
        for proto in DAEMON_PORTS[name]:
            assert not answers(stack.port(proto))
    assert not os.path.exists(stack.path("run", "mailctl.pid"))
    st = stack.ctl("status")
    assert st.returncode == 3
    assert "up       not running" in st.stdout.splitlines()
    assert "AddressSanitizer" not in up.stderr()


def test_up_refuses_a_second_supervisor(stack):
    up = Up(stack)
    try:
        up.wait_line("mailstack is up")
        r = stack.ctl("up")
        assert r.returncode == 1
        assert r.stderr == (f"mailctl: mailstack is already running in {stack.dir} "
                            f"(mailctl pid {up.proc.pid})\n")
    finally:
        assert up.stop(signal.SIGINT) == 0


def test_up_port_in_use_names_the_port(stack):
    port = stack.port("submission")
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen(1)
    try:
        r = stack.ctl("up", timeout=120)
    finally:
        blocker.close()
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert f"mta: cannot listen on 127.0.0.1:{port}: address already in use" in lines
    assert (f"mailctl: mta could not start (exit status 1): mta: cannot listen on "
            f"127.0.0.1:{port}: address already in use") in lines
    # Nothing is left running.
    for name in ("mda", "pop3d", "imapd"):
        pid = daemon_pid(stack, name)
        assert not pid or not alive(pid), name
    assert not os.path.exists(stack.path("run", "mailctl.pid"))


# ---- running as root: the daemons drop to server.run_as ----

def test_init_run_as_follows_reachability(tmp_path):
    """As root, init keeps the default run_as only when that user can reach the
    data directory; otherwise it says so and keeps the daemons as root."""
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    r = mailctl("init", "--dir", str(hidden / "d"))
    assert r.returncode == 0
    conf = (hidden / "d" / "mailstack.conf").read_text()
    if os.geteuid() == 0:
        assert re.search(r"^run_as = root$", conf, re.M)
        m = re.search(r"^note: nobody cannot pass through (/\S+), so the daemons will keep "
                      r"running as root \(server\.run_as = root\); use a data directory nobody "
                      r"can reach to have them drop privileges$", r.stdout, re.M)
        assert m, r.stdout
        # The first ancestor nobody cannot pass (pytest's own directories are 0700).
        assert str(hidden).startswith(m.group(1) + "/")
        assert stat.S_IMODE(os.stat(m.group(1)).st_mode) & 0o001 == 0
    else:
        assert re.search(r"^run_as = nobody$", conf, re.M)
    reachable = tempfile.mkdtemp(prefix="mailstack-test-", dir="/tmp")
    try:
        os.chmod(reachable, 0o711)
        r = mailctl("init", "--dir", os.path.join(reachable, "d"))
        assert r.returncode == 0 and "note:" not in r.stdout
        with open(os.path.join(reachable, "d", "mailstack.conf")) as f:
            assert re.search(r"^run_as = nobody$", f.read(), re.M)
    finally:
        shutil.rmtree(reachable)


def test_up_with_dropped_privileges_serves_a_user_added_later():
    """Run as root in a directory nobody can reach, the daemons give up root,
    and a user added while they run can still log in and has a mailbox."""
    reachable = tempfile.mkdtemp(prefix="mailstack-test-", dir="/tmp")
    os.chmod(reachable, 0o711)
    os.mkdir(os.path.join(reachable, "stack"))
    stack = Stack(os.path.join(reachable, "stack"))
    up = Up(stack)
    try:
        up.wait_line("mailstack is up")
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody").pw_uid
            for name in ("mta", "mda", "pop3d", "imapd"):
                with open(f"/proc/{daemon_pid(stack, name)}/status") as f:
                    uid = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
                assert int(uid) == nobody, name
        r = stack.ctl("user", "add", "carol@example.test", input="carol-pw-9\n")
        assert r.returncode == 0, r.stderr
        pop = poplib.POP3_SSL("127.0.0.1", stack.port("pop3s"), context=stack.ssl_context(),
                              timeout=30)
        pop.user("carol@example.test")
        assert pop.pass_("carol-pw-9").startswith(b"+OK Logged in")
        pop.quit()
    finally:
        rc = up.stop()
        shutil.rmtree(reachable)
    assert rc == 0, up.stderr()[-3000:]


def tmux_run(name, command, keys, timeout=30):
    """Runs command in a detached tmux pane, types keys (each followed by Enter
    once the pane shows the expected prompt) and returns the pane's text."""
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    done = f"{command}; echo EXIT=$?; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "200", "-y", "20", done],
                   check=True)
    try:
        deadline = time.monotonic() + timeout
        for i, (prompt, text) in enumerate(keys):
            # capture-pane drops trailing blanks; count this prompt's showings so far.
            want = sum(1 for p, _ in keys[:i + 1] if p == prompt)
            while time.monotonic() < deadline:
                pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", name],
                                      capture_output=True, text=True).stdout
                if pane.count(prompt.rstrip()) >= want:
                    break
                time.sleep(0.05)
            subprocess.run(["tmux", "send-keys", "-t", name, "-l", text], check=True)
            subprocess.run(["tmux", "send-keys", "-t", name, "Enter"], check=True)
        while time.monotonic() < deadline:
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", name],
                                  capture_output=True, text=True).stdout
            if "EXIT=" in pane:
                return pane
            time.sleep(0.05)
        raise AssertionError(f"no exit status in the pane:\n{pane}")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def test_password_prompt_on_a_terminal_hides_and_confirms(stack):
    cmd = f"MAILSTACK_DIR={stack.dir} {MAILCTL} user add carol@example.test"
    pane = tmux_run("mailctl-pw1", cmd, [("Password for carol@example.test: ", "Terminal-pw-1"),
                                         ("Repeat the password: ", "Terminal-pw-1")])
    assert "Terminal-pw-1" not in pane
    lines = [line.rstrip() for line in pane.splitlines() if line.strip()]
    assert lines[-2:] == [f"added carol@example.test (mailbox "
                          f"{stack.path('mail', 'example.test', 'carol.sqlite')})", "EXIT=0"]

    cmd = f"MAILSTACK_DIR={stack.dir} {MAILCTL} user passwd carol@example.test"
    pane = tmux_run("mailctl-pw2", cmd, [("Password for carol@example.test: ", "one-thing"),
                                         ("Repeat the password: ", "another")])
    assert "one-thing" not in pane and "another" not in pane
    lines = [line.rstrip() for line in pane.splitlines() if line.strip()]
    assert lines[-2:] == ["mailctl: the passwords do not match", "EXIT=1"]
