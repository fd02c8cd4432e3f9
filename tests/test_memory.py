"""The glibc mmap threshold that keeps model-sized temporaries from growing the heap."""

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_threshold_is_set_on_import_unless_the_user_set_one():
    from latentcode.memory import return_large_blocks

    assert return_large_blocks() is True  # this machine's libc is glibc
    code = "from latentcode.memory import return_large_blocks as r; print(r())"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"MALLOC_MMAP_THRESHOLD_": "65536", "PATH": ""})
    assert run.stdout.strip() == "False"  # the user's own setting wins
