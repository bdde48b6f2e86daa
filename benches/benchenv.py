"""The benchmarks' Python environment: .venv at the project's root, given
benches/requirements.txt (DuckDB, pyarrow, boto3, confluent-kafka) when a package is missing."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")


def make():
    """Creates .venv if there is none; returns its Python."""
    if not os.path.exists(VENV_PY):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    return VENV_PY


def naive_column(name):
    """The Python and Go peers' column for a property: `$x` -> `mp_x`, lower case, other
    characters -> `_` (not Mixpanel's rules)."""
    n = "mp_" + name[1:] if name.startswith("$") else name
    return re.sub(r"[^a-z0-9_]", "_", n.lower())


def install():
    """Installs benches/requirements.txt into .venv."""
    print("installing benches/requirements.txt into .venv", file=sys.stderr, flush=True)
    subprocess.run([VENV_PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", os.path.join(ROOT, "benches", "requirements.txt")], check=True)
