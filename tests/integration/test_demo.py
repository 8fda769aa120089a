"""`mailctl demo` (issue 8): the whole lifecycle, narrated, run with
--no-pause against a running stack, against a stopped one (the demo starts
`mailctl up` in the background) and on a data directory that does not exist
yet (the demo runs `mailctl init --demo`, as from a fresh clone)."""
import os
import re
import signal
import subprocess
import time

from conftest import free_port_base
from test_mta_smtp import ALICE, BOB, make_stack

STEPS = ["The stack", "Alice writes a message", "Alice sends it over submission (port 587)",
         "The SMTP conversation, as the mta saw it", "The queue",
         "The LMTP conversation, as the mda saw it", "The row in bob's SQLite mailbox",
         "Bob reads it over IMAP (port 143, STARTTLS)",
         "Bob reads it again over POP3 (port 110, STLS)", "The whole journey"]


def write_credentials(stack):
    with open(stack.path("demo-credentials"), "w") as f:
        for address, password in stack.passwords.items():
            f.write(f"{address} {password}\n")
    os.chmod(stack.path("demo-credentials"), 0o600)


def run_demo(env, *args, stdin=subprocess.DEVNULL, bin_dir=None):
    return subprocess.run([os.path.join(bin_dir, "mailctl"), "demo", *args], stdin=stdin,
                          capture_output=True, text=True, timeout=300, env=env)


def check_output(out, port_base, datadir):
    for i, title in enumerate(STEPS, 1):
        assert f"\n== Step {i}/10: {title} ==\n" in out, title
    # each command is printed before its output
    assert f"\n$ curl -sS --ssl-reqd smtp://127.0.0.1:{port_base + 587} --mail-from {ALICE} " \
           f"--mail-rcpt {BOB} --user '{ALICE}:" in out
    assert f"--cacert {datadir}/tls/cert.pem -T {datadir}/demo-message.eml\n" in out
    assert "\n$ mailctl transcript --proto smtp --comp mta --last\n" in out
    assert re.search(r" TLS +C: AUTH PLAIN\n.* TLS +C: \*\*\*\*\n", out, re.S) or \
        " TLS   C: AUTH PLAIN ****\n" in out
    m = re.search(r"S: 250 2\.0\.0 Ok: queued as ([0-9A-Z]{16})\n", out)
    assert m
    lid = m.group(1)
    assert f"The lifecycle id of the message is {lid}" in out
    assert "\n$ mailctl queue\n" in out
    assert f"\n$ mailctl trace --comp mta {lid}\n" in out
    assert "\n$ mailctl transcript --proto lmtp --comp mda --last\n" in out
    assert f"XLIFECYCLE={lid}" in out
    # the mailbox row, through the read-only views
    assert "$ sqlite3 -readonly -header -column -cmd \"$(mailctl views)\"" in out
    assert re.search(rf"\nINBOX +\d+ +{lid} +\S* *\d+ +\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d +"
                     r"Hello Bob, this is the mailstack demo", out)
    # IMAP and POP3 each print the message
    assert re.search(rf"\$ curl -sS --ssl-reqd 'imap://127\.0\.0\.1:{port_base + 143}/INBOX;UID=\d+'",
                     out)
    assert re.search(rf"\$ curl -sS --ssl-reqd pop3://127\.0\.0\.1:{port_base + 110}/\d+ ", out)
    assert out.count(f"by localhost (mailstack) with ESMTPSA id {lid}") == 2
    # the trace: every hop
    trace = out[out.index(f"$ mailctl trace {lid}\n"):]
    for words in ("accepted over SMTP", "committed to the queue", "delivery attempt",
                  "filed in the mailbox", "read over IMAP", "read over POP3"):
        assert words in trace, words
    assert f"That was the whole lifecycle of message {lid}." in out
    return lid


def stop_up(datadir):
    """Stops the `mailctl up` the demo started, and waits until it is gone."""
    with open(os.path.join(datadir, "run", "mailctl.pid")) as f:
        pid = int(f.read().split()[0])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"mailctl up (pid {pid}) did not stop")


def test_demo_against_a_running_stack(stack_factory):
    s = make_stack(stack_factory)
    write_credentials(s)
    s.start("mda", "mta", "imapd", "pop3d")
    r = run_demo(s.env(), "--no-pause", bin_dir=s.bin)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert "Nothing answers" not in r.stdout
    assert "\n$ mailctl status\n" in r.stdout
    check_output(r.stdout, s.port_base, s.dir)
    assert r.stderr == ""


def test_demo_starts_the_stack_and_leaves_it_running(stack_factory):
    s = make_stack(stack_factory)
    write_credentials(s)
    # not a terminal: no pause even without --no-pause
    r = run_demo(s.env(), bin_dir=s.bin)
    try:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        assert "starting the stack" in r.stdout
        assert f"\n$ mailctl up > {s.dir}/log/demo-up.log 2>&1 &\n" in r.stdout
        assert "press Enter" not in r.stdout
        m = re.search(r"The stack started by the demo is still running: stop it with `kill (\d+)`",
                      r.stdout)
        assert m
        check_output(r.stdout, s.port_base, s.dir)
        assert s.ctl("status").returncode == 0
    finally:
        stop_up(s.dir)


def test_demo_on_a_fresh_data_directory(tmp_path):
    if os.geteuid() == 0:
        # the daemons switch to an unprivileged user: let it reach the directory
        for p in (tmp_path, *tmp_path.parents):
            if str(p) in ("/", "/tmp"):
                break
            os.chmod(p, os.stat(p).st_mode | 0o711)
    datadir = str(tmp_path / "var")
    base = free_port_base()
    env = dict(os.environ, MAILSTACK_DIR=datadir,
               ASAN_OPTIONS="abort_on_error=1:detect_leaks=1")
    from conftest import BIN
    r = run_demo(env, "--no-pause", "--port-base", str(base), bin_dir=BIN)
    try:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        assert f"\n$ mailctl init --demo --port-base {base}\n" in r.stdout
        assert "created user alice@example.test password " in r.stdout
        check_output(r.stdout, base, datadir)
    finally:
        if os.path.exists(os.path.join(datadir, "run", "mailctl.pid")):
            stop_up(datadir)


def test_demo_usage(stack_factory):
    s = make_stack(stack_factory)
    r = s.ctl("demo", "--bogus")
    assert r.returncode == 1 and r.stderr.startswith("usage: mailctl demo")
    r = s.ctl("demo", "--help")
    assert r.returncode == 0 and "--no-pause" in r.stdout
    # users made without --demo: their passwords are not known to the demo
    r = s.ctl("demo", "--no-pause")
    assert r.returncode == 1
    assert "\n$ mailctl init --demo\n" in r.stdout
    assert "does not hold alice's and bob's passwords" in r.stderr
    assert r.stderr.endswith("mailctl: demo stopped at step 1 (The stack)\n")
