#!/bin/sh
# Starlette's own tests for its SessionMiddleware, run against asess.starlette with
# only the import line changed: the drop-in promise, checked outside the repository.
# Downloads the sdist of the installed Starlette version (its tests ship in it).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-"$ROOT/.venv/bin/python"}
VERSION=$("$PY" -c 'import starlette; print(starlette.__version__)')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    "starlette==$VERSION" -d "$WORK"
tar xzf "$WORK/starlette-$VERSION.tar.gz" -C "$WORK"
SRC="$WORK/starlette-$VERSION/tests"
RUN="$WORK/run"
mkdir -p "$RUN/tests/middleware"
cp "$SRC/__init__.py" "$SRC/conftest.py" "$SRC/types.py" "$RUN/tests/"
touch "$RUN/tests/middleware/__init__.py"
OLD='from starlette.middleware.sessions import Session, SessionMiddleware'
NEW='from asess.starlette import Session, SessionMiddleware'
sed "s/^$OLD\$/$NEW/" "$SRC/middleware/test_session.py" > "$RUN/tests/middleware/test_session.py"
# Exactly one line may differ, and it must be the import.
CHANGED=$(diff "$SRC/middleware/test_session.py" "$RUN/tests/middleware/test_session.py" | grep -c '^[<>]' || true)
if [ "$CHANGED" != 2 ]; then
    echo "expected the import line of test_session.py to change, got $CHANGED changed lines" >&2
    exit 1
fi
# Starlette's own pytest settings that matter here: strict markers, warnings are errors.
cat > "$RUN/pyproject.toml" <<'TOML'
[tool.pytest.ini_options]
addopts = "-rXs --strict-markers"
xfail_strict = true
asyncio_default_fixture_loop_scope = "function"
filterwarnings = ["error"]
TOML
echo "Starlette $VERSION tests/middleware/test_session.py against asess.starlette:"
cd "$RUN" && PYTHONPATH="$ROOT" "$PY" -m pytest -p no:cacheprovider -q tests/middleware/test_session.py
