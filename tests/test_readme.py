"""The README's Python quick start runs verbatim (in a temporary directory) and prints an exact NLL."""

import contextlib
import io
import os
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_quick_start_runs_as_written(tmp_path):
    text = README.read_text()
    section = text[text.index("## Quick start (Python)") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out, here = io.StringIO(), os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README quick start", "exec"), {})
    finally:
        os.chdir(here)
    printed = out.getvalue()
    assert "'kind': 'exact'" in printed and "'n': 270" in printed and "bits_per_dim" in printed
    assert (tmp_path / "runs" / "quickstart" / "model_best.safetensors").exists()
