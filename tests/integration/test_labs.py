"""Every lab in labs/ (issue 8), run as written: the ```sh blocks of each lab
in one bash (set -e, pipefail) against a fresh stack on free ports, with the
lab's ```ini blocks added to mailstack.conf first and the variables of
labs/README.md set; every `#> text` line of a block must appear in that
block's output. A lab that says "needs root" is skipped only when not root
or when `ip netns add` is refused."""
import glob
import os
import re
import subprocess

import pytest

from test_lab_net import namespaces_allowed
from test_mta_smtp import make_stack

LABS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "labs")
LABS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(LABS_DIR, "[0-9][0-9]-*.md")))
BLOCK = re.compile(r"^```(sh|ini)\n(.*?)^```$", re.S | re.M)


def parse_lab(text):
    """(ini text, [(commands, [expected ...]) per sh block])."""
    ini, blocks = [], []
    for kind, body in BLOCK.findall(text):
        if kind == "ini":
            ini.append(body)
            continue
        commands, expected = [], []
        for line in body.splitlines():
            if line.startswith("#> "):
                expected.append(line[3:])
            else:
                commands.append(line)
        blocks.append(("\n".join(commands), expected))
    return "\n".join(ini), blocks


def lab_env(stack):
    env = stack.env()
    env.update(MS_DIR=stack.dir, MAILSTACK_DIR=stack.dir,
               PATH=stack.bin + ":" + env.get("PATH", "/usr/bin:/bin"),
               ALICE_PASS=stack.passwords["alice@example.test"],
               BOB_PASS=stack.passwords["bob@example.test"])
    for name in ("smtp", "submission", "smtps", "imap", "imaps", "pop3", "pop3s"):
        env[f"{name.upper()}_PORT"] = str(stack.port(name))
    return env


def test_every_lab_is_listed_and_has_answers():
    assert len(LABS) == 9
    readme = open(os.path.join(LABS_DIR, "README.md")).read()
    for lab in LABS:
        assert f"({lab})" in readme, lab
        assert os.path.exists(os.path.join(LABS_DIR, "answers", lab)), lab
        text = open(os.path.join(LABS_DIR, lab)).read()
        for heading in ("**Goal:**", "## Commands", "## What to observe", "## Questions"):
            assert heading in text, (lab, heading)


def test_readme_setup_block_sets_every_variable(tmp_path):
    _, blocks = parse_lab(open(os.path.join(LABS_DIR, "README.md")).read())
    assert len(blocks) == 1
    (tmp_path / "demo-credentials").write_text("alice@example.test A1\nbob@example.test B2\n")
    script = f"cd {tmp_path}\nMS_DIR={tmp_path}\n" + blocks[0][0] + \
        "\necho $MAILSTACK_DIR $SMTP_PORT $SUBMISSION_PORT $SMTPS_PORT $IMAP_PORT $IMAPS_PORT" \
        " $POP3_PORT $POP3S_PORT $ALICE_PASS $BOB_PASS\n"
    r = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"]})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path), "10025", "10587", "10465", "10143", "10993",
                                "10110", "10995", "A1", "B2"]


@pytest.mark.parametrize("lab", LABS)
def test_lab(stack_factory, tmp_path, lab):
    text = open(os.path.join(LABS_DIR, lab)).read()
    if "needs root" in text.split("\n## ")[0]:
        why = namespaces_allowed()
        if why:
            pytest.skip(why)
        # the lab's own hosts run as an unprivileged user: let it reach them
        for p in (tmp_path, *tmp_path.parents):
            if str(p) in ("/", "/tmp"):
                break
            os.chmod(p, os.stat(p).st_mode | 0o711)
    ini, blocks = parse_lab(text)
    assert blocks, f"{lab} has no sh block"
    stack = make_stack(stack_factory, ini)
    with open(stack.path("demo-credentials"), "w") as f:
        for address, password in stack.passwords.items():
            f.write(f"{address} {password}\n")
    stack.start("mda", "mta", "imapd", "pop3d")
    script = ["set -eo pipefail", f"cd {tmp_path}"]
    for i, (commands, _) in enumerate(blocks):
        script.append(f"echo '@@ block {i} @@'")
        script.append(commands)
    script.append("echo '@@ end @@'")
    try:
        r = subprocess.run(["bash", "-c", "\n".join(script)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=400, env=lab_env(stack))
    finally:
        if "mailctl lab net up" in text:
            # a lab that failed half-way must not leave its hosts behind
            stack.ctl("lab", "net", "down", timeout=120)
    parts = re.split(r"^@@ (?:block \d+|end) @@\n", r.stdout, flags=re.M)[1:]
    assert r.returncode == 0, f"{lab}: block {len(parts)} failed:\n{r.stdout[-4000:]}"
    assert len(parts) == len(blocks) + 1
    for i, (commands, expected) in enumerate(blocks):
        for want in expected:
            assert want in parts[i], f"{lab} block {i}: {want!r} not in:\n{parts[i][-3000:]}"
