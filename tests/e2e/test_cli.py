import subprocess


def test_help_lists_commands(fastserve_bin):
    out = subprocess.run([fastserve_bin, "--help"], capture_output=True, text=True, check=True).stdout
    assert "commands:" in out


def test_unknown_command_fails(fastserve_bin):
    proc = subprocess.run([fastserve_bin, "no-such-command"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown command" in proc.stderr
