"""The glibc mmap threshold that keeps model-sized temporaries from growing the heap."""

import subprocess
import sys

import pytest

from latentcode import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_threshold_is_set_unless_the_user_set_one():
    assert memory.return_large_blocks() is True  # this machine's libc is glibc
    code = "from latentcode.memory import return_large_blocks as r; print(r())"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"MALLOC_MMAP_THRESHOLD_": "65536", "PATH": ""})
    assert run.stdout.strip() == "False"  # the user's own setting wins


def test_scoring_gets_the_low_threshold_and_training_the_adapted_one(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "return_large_blocks", lambda t=memory.THRESHOLD_BYTES:
                        calls.append(t) or True)
    with memory.large_blocks_returned():
        with memory.large_blocks_returned():  # nested: no change until the outer one leaves
            assert calls == [memory.THRESHOLD_BYTES]
        assert calls == [memory.THRESHOLD_BYTES]
    assert calls == [memory.THRESHOLD_BYTES, memory.ADAPTED_BYTES]
    with pytest.raises(RuntimeError), memory.large_blocks_returned():
        raise RuntimeError("scoring failed")
    assert calls[-1] == memory.ADAPTED_BYTES and memory._depth == 0


def test_importing_latentcode_leaves_the_threshold_alone():
    code = "import sys, latentcode; print('latentcode.memory' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"  # the 1 MB threshold slows training (memory.py)
