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
# ctrl_c DIR ROWS CMD...: runs CMD, a training run writing into DIR, in the background until DIR/log.tsv has
# ROWS lines, then sends it SIGINT twice, 50 ms apart, as GNU timeout does (to the child, then to its process
# group): it must take them as one, finish its step, save DIR/model.ckpt, say so and exit 130.
ctrl_c() {
    local dir=$1 rows=$2 pid st i
    shift 2
    "$@" > "$dir.out" 2>&1 &
    pid=$!
    for i in $(seq 1 600); do [ -s "$dir/log.tsv" ] && [ "$(wc -l < "$dir/log.tsv")" -ge "$rows" ] && break; sleep 0.1; done
    kill -INT $pid; sleep 0.05; kill -INT $pid 2> /dev/null; wait $pid; st=$?
    checks=$((checks + 1))
    if [ $st = 130 ] && grep -q "interrupted: saved" "$dir.out" && [ -s "$dir/model.ckpt" ]; then ok "Ctrl-C saves and exits 130"
    else fail "Ctrl-C: exit $st"; tail -3 "$dir.out"; fi
}
finish() {
    echo "$((checks - fails)) passed, $fails failed"
    [ "$fails" -eq 0 ]
}
