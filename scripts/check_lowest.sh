#!/usr/bin/env bash
# Install the package into an environment that already holds tensorflow-cpu and the other
# dependencies at their lowest supported versions (constraints/lowest.txt), as a user's
# machine might: pip must change none of tensorflow*, keras and numpy, `import unet` must
# work, and the tests below must pass there. Used by `make lowest` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV_LOWEST:-.venv-lowest}
TESTS=${LOWEST_TESTS:-tests/test_package.py tests/test_model.py tests/test_losses.py tests/test_metrics.py tests/test_data.py tests/test_predict.py tests/test_cli.py}

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
pip="$VENV/bin/pip --quiet --disable-pip-version-check"
$pip install --upgrade pip
$pip install -r constraints/lowest.txt "pytest>=7.4"      # the user's environment
freeze() { "$VENV/bin/pip" freeze | grep -iE '^(tensorflow|keras|numpy)[a-z_-]*==' | sort; }
freeze > "$VENV/before.txt"
$pip install -e .                                         # what the README tells them
freeze > "$VENV/after.txt"
if ! diff -u "$VENV/before.txt" "$VENV/after.txt"; then
    echo "check_lowest: installing the package changed the packages above" >&2
    exit 1
fi
"$VENV/bin/pip" check
echo "check_lowest: pip changed none of: $(tr '\n' ' ' < "$VENV/after.txt")"
"$VENV/bin/python" -c "from unet import unet_model; m = unet_model(); assert m.count_params() == 31031810; print('check_lowest: unet_model() works')"
UNET_QUICK=1 "$VENV/bin/python" -m pytest $TESTS -q -p no:cacheprovider
