"""The layers hold: import-linter's contracts in pyproject.toml, run as CI runs them.

They say that nothing in `engine` imports a layer that uses it (cli, server, runs, batchrun,
vary, training, evaluation), directly or through another module; that `evaluation` imports no
command-line or server code; and that the modules of `engine` and of `evaluation` import each
other without cycles.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_in_pyproject_hold():
    beside = Path(sys.executable).with_name("lint-imports")
    script = str(beside) if beside.is_file() else shutil.which("lint-imports")
    assert script, "lint-imports is not installed: install the `test` extra"
    proc = subprocess.run(
        [script, "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    kept = re.search(r"Contracts: (\d+) kept, 0 broken\.", report)
    assert kept is not None and int(kept.group(1)) >= 3, report  # none was dropped
