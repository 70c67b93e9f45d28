#!/usr/bin/env bash
# Installs the ORIGINAL clusto 0.7.9 (Python 2.7 only) into a virtualenv, with the
# PostgreSQL and MySQL drivers, for the `clusto import` test. Idempotent; prints the venv's python.
# Usage: tests/import/setup-original.sh [VENV_DIR]
set -euo pipefail
venv=${1:-$HOME/.cache/clusto-original-venv}
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c 'import clusto, psycopg2, pymysql' 2>/dev/null; then
  echo "$py"; exit 0
fi
if [ ! -x "$py" ]; then
  py2=""
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for c in "$root"/versions/2.7.*/bin/python python2.7 python2; do
    if command -v "$c" >/dev/null 2>&1; then py2=$(command -v "$c"); break; fi
  done
  [ -n "$py2" ] || { echo "no Python 2.7 (pyenv 2.7.x): the original clusto cannot run" >&2; exit 3; }
  "$py2" -m pip install -q --user 'virtualenv<20.22' >&2
  "$py2" -m virtualenv -q "$venv" >&2
fi
# The versions clusto 0.7.9 ran with; psycopg2 2.8 and PyMySQL 0.10 are the last for Python 2.7.
"$venv/bin/pip" install -q 'SQLAlchemy>=1.3,<1.4' 'IPy<1.02' 'WebOb<1.9' 'psycopg2-binary<2.9' 'PyMySQL<1.0' >&2
"$venv/bin/pip" install -q --no-deps clusto==0.7.9 >&2
"$py" -c 'import clusto, psycopg2, pymysql' >&2
echo "$py"
