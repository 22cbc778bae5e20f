# Shared by scripts/dev and scripts/test: a project virtual environment in .venv, (re)installed
# when pyproject.toml changes. Override the location with DAGD_VENV.
VENV="${DAGD_VENV:-$PWD/.venv}"

ensure_venv() {
  local stamp="$VENV/.dagd-installed"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet -e '.[dev]' >&2
    touch "$stamp"
  fi
}
