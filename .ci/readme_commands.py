"""Print the README's two set-up commands (the first fenced bash block), one per line, for .ci/run to execute:
CI runs exactly what a new user is told to run, so the two cannot diverge."""

import re
import sys
from pathlib import Path

readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
block = re.search(r"```bash\n(.*?)```", readme, re.S)
lines = [line for line in block.group(1).splitlines() if line.strip()] if block else []
if len(lines) != 2:
    sys.exit("README.md must start with one bash block of two commands: install and run, then test")
print("\n".join(lines))
