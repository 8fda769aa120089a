"""`mailctl lab net` (issue 8): two hosts in network namespaces. Builds the
lab, sends alice@school.test -> bob@home.test from inside the school host,
checks the hop in both hosts' traces and the delivery in bob's mailbox, then
tears it down. Skipped only when not root or when the kernel refuses
`ip netns add` (tried, not guessed)."""
import os
import sqlite3
import subprocess
import time

import pytest

from conftest import BIN

PROBE_NS = "ms-probe"


def namespaces_allowed():
    if os.geteuid() != 0:
        return "not root: `mailctl lab net` creates network namespaces"
    r = subprocess.run(["ip", "netns", "add", PROBE_NS], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", PROBE_NS], capture_output=True)
    return None


def mailctl(datadir, *args, timeout=180):
    return subprocess.run([os.path.join(BIN, "mailctl"), "--dir", datadir, *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def lab(tmp_path):
    why = namespaces_allowed()
    if why:
        pytest.skip(why)
    # the daemons switch to an unprivileged user: let it reach the directory
    for p in (tmp_path, *tmp_path.parents):
        if str(p) in ("/", "/tmp"):
            break
        os.chmod(p, os.stat(p).st_mode | 0o711)
    datadir = str(tmp_path / "var")
    os.mkdir(datadir)
    os.chmod(datadir, 0o755)
    yield datadir
    r = mailctl(datadir, "lab", "net", "down")
    assert r.returncode == 0, r.stdout + r.stderr


def credentials(datadir, host):
    with open(os.path.join(datadir, "lab", host, "lab-credentials")) as f:
        address, password = f.read().split()
    return address, password


def test_two_hosts_send_across(lab, tmp_path):
    r = mailctl(lab, "lab", "net", "up")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "+ ip netns add ms-school\n" in r.stdout
    assert "+ ip link add ms-school0 type veth peer name ms-home0\n" in r.stdout
    assert "(appended listen and [routes] home.test = 10.77.0.2:10025 to " in r.stdout
    assert "lab net is up:\n" in r.stdout
    # up again: nothing to do, still up
    r = mailctl(lab, "lab", "net", "up")
    assert r.returncode == 0 and "ip netns add" not in r.stdout
    r = mailctl(lab, "lab", "net", "status")
    assert r.returncode == 0, r.stdout
    assert "== school: alice@school.test, 10.77.0.1/24 in namespace ms-school (present)" in r.stdout
    assert "== home: bob@home.test, 10.77.0.2/24 in namespace ms-home (present)" in r.stdout
    assert "lab net: 2 of 2 hosts running" in r.stdout

    school = os.path.join(lab, "lab", "school")
    home = os.path.join(lab, "lab", "home")
    alice, password = credentials(lab, "school")
    assert alice == "alice@school.test"
    msg = tmp_path / "msg.eml"
    msg.write_bytes(b"From: alice@school.test\r\nTo: bob@home.test\r\n"
                    b"Subject: across the lab network\r\n\r\nhello home\r\n")
    os.chmod(msg, 0o644)
    r = subprocess.run(["ip", "netns", "exec", "ms-school", "curl", "-sS", "--max-time", "30",
                        "--ssl-reqd", "smtp://127.0.0.1:10587", "--mail-from", alice,
                        "--mail-rcpt", "bob@home.test", "--user", f"{alice}:{password}",
                        "--cacert", os.path.join(school, "tls", "cert.pem"), "-T", str(msg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # bob's mailbox on the home host gets it, through the other host's mta
    path = os.path.join(home, "mail", "home.test", "bob.sqlite")
    deadline = time.monotonic() + 30
    rows = []
    while time.monotonic() < deadline and not rows:
        if os.path.exists(path):
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                rows = db.execute("SELECT CAST(b.data AS TEXT) FROM messages m "
                                  "JOIN bodies b ON b.id = m.body_id").fetchall()
            finally:
                db.close()
        time.sleep(0.2)
    assert rows, "bob@home.test got nothing"
    body = rows[0][0]
    assert "Subject: across the lab network" in body
    assert "from mail.school.test ([10.77.0.1])" in body
    # each host's trace shows its side of the hop
    r = mailctl(school, "trace", "--last")
    assert "hop=10.77.0.2:10025" in r.stdout and "delivered to the next hop" in r.stdout
    r = mailctl(home, "trace", "--last")
    assert 'client="mail.school.test [10.77.0.1]"' in r.stdout
    assert "filed in the mailbox" in r.stdout

    r = mailctl(lab, "lab", "net", "down")
    assert r.returncode == 0
    assert "+ ip netns del ms-school\n" in r.stdout
    r = mailctl(lab, "lab", "net", "status")
    assert r.returncode == 3
    assert "(absent)" in r.stdout and "lab net: 0 of 2 hosts running" in r.stdout


def test_usage_and_root_check(tmp_path):
    r = mailctl(str(tmp_path), "lab")
    assert r.returncode == 1 and r.stderr.startswith("usage: mailctl lab net up|down|status")
    r = mailctl(str(tmp_path), "lab", "net", "sideways")
    assert r.returncode == 1
    # as another user than root: refused with the reason
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        os.path.join(BIN, "mailctl"), "--dir", "/tmp", "lab", "net", "status"],
                       capture_output=True, text=True) if os.geteuid() == 0 else \
        subprocess.run([os.path.join(BIN, "mailctl"), "--dir", "/tmp", "lab", "net", "status"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == "mailctl: lab net needs root: it creates network namespaces (run it with sudo)\n"
