"""The client commands of hetnicd on bad local input: a rules or RETA file that is not text
is one line ``hetnic CMD: error: ...`` and exit 2, before any daemon is asked."""

import subprocess
import sys

import pytest


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cmd", [["rules", "apply"], ["rss", "set-reta"]])
def test_a_binary_file_is_one_line(cmd, tmp_path):
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x7fELF\xff\xfe\x00" * 10)
    got = subprocess.run([sys.executable, "-m", "hetnic", *cmd, str(binary), "--socket",
                          str(tmp_path / "none.sock")], capture_output=True, text=True,
                         timeout=60)
    assert got.returncode == 2
    assert got.stderr == f"hetnic {cmd[0]}: error: {binary}: not a text file (not UTF-8 at " \
        "byte 4)\n"
