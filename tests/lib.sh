# Shared helpers of the shell tests: run from the repository root.
set -u
cd "$(dirname "$0")/.." || exit 1
SHARED=${HGRN2_SHARED:-../shared}
TMP=tests/tmp/$(basename "$0" .sh)
rm -rf "$TMP"; mkdir -p "$TMP"
fails=0; checks=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
# expect CODE DESCRIPTION -- COMMAND...: runs the command, checks its exit status; stderr kept in $TMP/err
expect() {
    local want=$1 what=$2; shift 3
    checks=$((checks + 1))
    "$@" >"$TMP/out" 2>"$TMP/err"
    local got=$?
    if [ "$got" != "$want" ]; then fail "$what: exit $got, expected $want"; sed 's/^/    /' "$TMP/err" | head -5; return 1; fi
    ok "$what (exit $got)"
}
# The message of a failure must be one clear line starting with the program's name.
expect_msg() {
    local pattern=$1
    if ! grep -q -- "$pattern" "$TMP/err"; then fail "stderr lacks '$pattern':"; sed 's/^/    /' "$TMP/err" | head -5; fi
}
finish() {
    echo "$((checks - fails)) passed, $fails failed"
    [ "$fails" -eq 0 ]
}
