// tests/data_cmd.h: what the data tests (test_lra.c, test_images.c) share: files as text, and `hgrn2 prepare`
// or `hgrn2 generate` run in process in a child (tests/child.h) with its output captured, and the check that
// such a command fails as it should. The including file defines TMP, its scratch folder, first.
#ifndef HGRN2_TESTS_DATA_CMD_H
#define HGRN2_TESTS_DATA_CMD_H

#ifndef TMP
#error "define TMP (the test's scratch folder) before including data_cmd.h"
#endif

// A file as text; empty (p NULL) when it is missing.
typedef struct { char *p; size_t n; } Text;
static Text slurp(const char *path) {
    if (access(path, F_OK) != 0) return (Text){0};
    Bytes b = read_bytes(path);
    return (Text){(char *)b.p, b.n};
}
static void spits(const char *path, const char *s) { spit(path, s, strlen(s)); }

// `hgrn2 <argv...>` (prepare or generate, in process), as a child runs it.
typedef struct { const char *cmd; const char **argv; int argc; } Command;
static void run_command(const void *arg) {
    const Command *c = arg;
    char **argv = (char **)c->argv;
    exit(!strcmp(c->cmd, "prepare") ? cmd_prepare(c->argc, argv) : cmd_generate(c->argc, argv));
}

// Runs `hgrn2 <cmd> <args...>` in a child with 60 s and 2 GiB more address space, stdout and stderr captured
// in out_text and err_text. Returns the exit status (-1: killed by a signal).
static const ChildSpec capped = {.cap_mib = 2048, .alarm_s = 60, .out_path = TMP "/stdout", .err_path = TMP "/stderr"};
static Text out_text, err_text;
static int run(const char *cmd, const char *const *args) {
    const char *argv[64];
    Command c = {cmd, argv, 0};
    argv[c.argc++] = cmd;
    for (; *args; args++) argv[c.argc++] = *args;
    argv[c.argc] = NULL;
    int status = child_spawn(&capped, run_command, &c).status;
    free(out_text.p);
    free(err_text.p);
    out_text = slurp(capped.out_path);
    err_text = slurp(capped.err_path);
    return status;
}

// The command must exit rc with a message holding both fragments (NULL: any): "hgrn2: error: " for a failure
// (1), the command's usage line for a usage error (2). SHOWMSG=1 prints every message.
static void expect_msg_of(const char *what, int rc, const char *cmd, const char *const *args, const char *frag1,
                          const char *frag2) {
    int got = run(cmd, args);
    const char *msg = err_text.p ? err_text.p : "";
    if (getenv("SHOWMSG")) printf("[%s] %s", what, msg);
    CHECK(got == rc && strstr(msg, rc == 1 ? "hgrn2: error: " : "hgrn2 ") && (!frag1 || strstr(msg, frag1)) &&
              (!frag2 || strstr(msg, frag2)),
          "%s: expected exit %d with \"%s\" and \"%s\", got %d: %s", what, rc, frag1 ? frag1 : "", frag2 ? frag2 : "", got, msg);
}

#endif
