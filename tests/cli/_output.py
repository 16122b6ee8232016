"""What a CLI test reads off a command's result."""

from __future__ import annotations


def one_error_line(code: int, out: str, err: str, message: str) -> None:
    """The command failed with exit 1 and one line on stderr, ``error: …`` naming ``message``,
    and no traceback anywhere."""
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert message in lines[0], lines[0]
    assert "Traceback" not in out + err
