// cmd_plot.c: hgrn2 plot: training and validation curves of one or more runs, drawn by gnuplot into a PNG.
#include <getopt.h>
#include <math.h>
#include <ctype.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "cli.h"
#include "commands.h"

static const char *PLOT_USAGE =
    "hgrn2 plot RUN [RUN...] [--out FILE.png] [--x tokens|step|wall] [--y loss|acc] [--size WxH] [--title TEXT]";
static const char *PLOT_HELP =
    "Draws each run's training loss (a line) and held-out loss (points on a line) against tokens seen,\n"
    "steps or wall time, from its log.tsv, with gnuplot (Debian's gnuplot-nox; make setup installs it).\n"
    "A RUN is a run directory or a log.tsv. Classifier runs (the LRA tasks) draw their losses the same way;\n"
    "their logs count steps and epochs, not tokens, so they are drawn against steps.\n"
    "\n"
    "  --out FILE           the PNG to write (default curves.png)\n"
    "  --x tokens|step|wall the horizontal axis (default tokens; a log without that column uses steps)\n"
    "  --y loss|acc         what is drawn (default loss); acc: the accuracy of runs that log it (mqar's held-out\n"
    "                       accuracy; a classifier's training and validation accuracy)\n"
    "  --size WxH           pixels (default 1000x600)\n"
    "  --title TEXT         a title over the plot\n";

enum { X_TOKENS, X_STEP, X_WALL };

static int is_directory(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
static int64_t file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
}

// One run's log: the columns plotted, as numbers (NAN where a row leaves them empty).
typedef struct {
    char *label;
    double *x, *train, *val;
    size_t n;
    int has_train;   // the log has the training column drawn (mqar's logs have no training accuracy)
    int x_kind;   // what x holds (X_STEP where the log lacks the asked column)
} Curve;

static int column_of(char **names, int n, const char *want) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], want)) return i;
    return -1;
}

// Splits a line at tabs in place (the line keeps its storage); returns the number of fields (at most max).
static int split_tabs(char *line, char **fields, int max) {
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line; n < max;) {
        fields[n++] = p;
        char *t = strchr(p, '\t');
        if (!t) break;
        *t = 0;
        p = t + 1;
    }
    return n;
}

static double field_num(char **f, int nf, int col) {
    if (col < 0 || col >= nf || !f[col][0]) return NAN;
    char *end;
    double v = strtod(f[col], &end);
    return end != f[col] && !*end && isfinite(v) ? v : NAN;
}

// The next line of a log into line[LOG_LINE] (its end cut off); 0 at the end. A line that does not fit is no
// log's: a run's rows are a few dozen bytes.
#define LOG_LINE 4096
static int log_line(FILE *f, char *line, const char *path, int64_t lineno) {
    if (!fgets(line, LOG_LINE, f)) {
        if (ferror(f)) die("reading %s failed: %s", path, strerror(errno));
        return 0;
    }
    if (!strchr(line, '\n') && !feof(f))
        die("%s:%lld is longer than %d bytes: not a run's log.tsv", path, (long long)lineno, LOG_LINE - 2);
    return 1;
}

static void curve_read(Curve *c, const char *run, int want_x, int acc) {
    char *path = is_directory(run) ? xasprintf("%s/log.tsv", run) : xasprintf("%s", run);
    if (file_size(path) < 0) {
        if (file_exists(path)) die("%s is not a regular file", path);
        die("cannot read %s: %s (a run directory holds log.tsv once it has trained a step)", path, strerror(ENOENT));
    }
    FILE *f = fopen(path, "r");
    if (!f) die("cannot read %s: %s", path, strerror(errno));
    char *line = xmalloc(LOG_LINE);
    int64_t lineno = 1;
    if (!log_line(f, line, path, lineno)) die("%s is empty: no header line", path);
    char *names[32];
    int nn = split_tabs(line, names, 32);
    int cstep = column_of(names, nn, "step"), ctrain = column_of(names, nn, "train_loss"),
        cval = column_of(names, nn, "val_loss");
    if (cstep < 0 || ctrain < 0 || cval < 0)
        die("%s is not a run's log.tsv: its header lacks step, train_loss or val_loss", path);
    if (acc) {   // the accuracy columns instead: val_acc always, train_acc where the log has it
        cval = column_of(names, nn, "val_acc");
        ctrain = column_of(names, nn, "train_acc");
        if (cval < 0)
            die("%s logs no accuracy (no val_acc column): --y acc draws mqar and classifier runs; a language "
                "model's log has losses only", path);
    }
    c->has_train = ctrain >= 0;
    const char *xname = want_x == X_TOKENS ? "tokens" : want_x == X_WALL ? "wall_s" : "step";
    int cx = column_of(names, nn, xname);
    c->x_kind = want_x;
    if (cx < 0) {
        fprintf(stderr, "hgrn2 plot: note: %s has no %s column; drawn against steps\n", path, xname);
        cx = cstep;
        c->x_kind = X_STEP;
    }
    // (the names point into `line`, which the rows reuse: only the column indices are kept)
    size_t cap_rows = 0;
    while (log_line(f, line, path, ++lineno)) {
        char *fl[32];
        int nf = split_tabs(line, fl, 32);
        double x = field_num(fl, nf, cx), tr = field_num(fl, nf, ctrain), va = field_num(fl, nf, cval);
        if (isnan(x)) continue;   // a row cut short by a crash, or one from an older format
        if (c->n == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 1024;
            c->x = xrealloc(c->x, cap_rows * sizeof(double));
            c->train = xrealloc(c->train, cap_rows * sizeof(double));
            c->val = xrealloc(c->val, cap_rows * sizeof(double));
        }
        c->x[c->n] = c->x_kind == X_TOKENS ? x / 1e6 : c->x_kind == X_WALL ? x / 60 : x;
        c->train[c->n] = tr;
        c->val[c->n] = va;
        c->n++;
    }
    free(line);
    fclose(f);
    if (!c->n) die("%s holds no rows to draw", path);
    // the label: the run directory's name (or the log's directory)
    char *dir = xasprintf("%s", run);
    if (!is_directory(run)) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else { free(dir); dir = xasprintf("."); }
    }
    size_t L = strlen(dir);
    while (L > 1 && dir[L - 1] == '/') dir[--L] = 0;
    const char *base = strrchr(dir, '/');
    c->label = xasprintf("%s", base ? base + 1 : dir);
    free(dir);
    free(path);
}

// gnuplot strings are in double quotes: a label keeps letters, digits and a few marks, the rest become '_'
static void gp_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) fputc(isalnum((unsigned char)*s) || strchr(" .,:;-+=()/#", *s) ? *s : '_', f);
    fputc('"', f);
}

int cmd_plot(int argc, char **argv) {
    enum { OP_OUT = 256, OP_X, OP_Y, OP_SIZE, OP_TITLE };
    static const struct option opts[] = {{"out", required_argument, 0, OP_OUT}, {"x", required_argument, 0, OP_X},
                                         {"y", required_argument, 0, OP_Y},
                                         {"size", required_argument, 0, OP_SIZE}, {"title", required_argument, 0, OP_TITLE},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    cli_start("hgrn2 plot", PLOT_USAGE);
    const char *out = "curves.png", *title = NULL;
    int want_x = X_TOKENS, acc = 0, W = 1000, Hh = 600, c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': print_help(PLOT_USAGE, PLOT_HELP); return 0;
        case OP_OUT: out = optarg; break;
        case OP_X:
            if (!strcmp(optarg, "tokens")) want_x = X_TOKENS;
            else if (!strcmp(optarg, "step")) want_x = X_STEP;
            else if (!strcmp(optarg, "wall")) want_x = X_WALL;
            else usage_error("--x must be tokens, step or wall, got '%s'", optarg);
            break;
        case OP_Y:
            if (!strcmp(optarg, "loss") || !strcmp(optarg, "acc")) acc = !strcmp(optarg, "acc");
            else usage_error("--y must be loss or acc, got '%s'", optarg);
            break;
        case OP_SIZE:
            if (sscanf(optarg, "%dx%d", &W, &Hh) != 2 || W < 200 || Hh < 150 || W > 10000 || Hh > 10000)
                usage_error("--size must be WIDTHxHEIGHT in pixels (200x150 to 10000x10000), got '%s'", optarg);
            break;
        case OP_TITLE: title = optarg; break;
        default: bad_option(argv, c);
        }
    }
    const int nruns = argc - optind;
    if (nruns < 1) usage_error("name at least one run directory or log.tsv");
    if (nruns > 16) usage_error("at most 16 runs in one plot, got %d", nruns);
    const size_t olen = strlen(out);
    if (olen < 5 || strcmp(out + olen - 4, ".png")) usage_error("--out must name a .png file, got '%s'", out);

    Curve *cv = xcalloc((size_t)nruns, sizeof *cv);
    int xk = X_STEP;
    for (int i = 0; i < nruns; i++) {
        curve_read(&cv[i], argv[optind + i], want_x, acc);
        if (i == 0) xk = cv[i].x_kind;
        else if (cv[i].x_kind != xk) die("the runs cannot share an axis: some logs have the %s column and some not; use --x step",
                                         want_x == X_TOKENS ? "tokens" : "wall_s");
    }

    // the data (one file of x, train, val per run) and the script, in a temporary folder
    char tmpl[] = "/tmp/hgrn2-plot-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) die("cannot create a temporary folder: %s", strerror(errno));
    char *script = xasprintf("%s/plot.gp", dir), *tmp_png = xasprintf("%s.tmp.png", out);
    FILE *g = fopen(script, "w");
    if (!g) die("cannot write %s: %s", script, strerror(errno));
    fprintf(g, "set terminal pngcairo size %d,%d noenhanced font ',10'\nset output ", W, Hh);
    gp_string(g, tmp_png);
    fprintf(g, "\nset grid\nset key outside right top\nset ylabel '%s'\nset xlabel '%s'\n",
            acc ? "accuracy" : "loss (nats)", xk == X_TOKENS ? "tokens (millions)" : xk == X_WALL ? "wall time (minutes)" : "step");
    if (acc) fputs("set yrange [0:1]\n", g);
    if (title) { fputs("set title ", g); gp_string(g, title); fputc('\n', g); }
    fputs("set datafile missing 'nan'\nplot ", g);
    for (int i = 0; i < nruns; i++) {
        char *dat = xasprintf("%s/run%d.dat", dir, i);
        FILE *d = fopen(dat, "w");
        if (!d) die("cannot write %s: %s", dat, strerror(errno));
        for (size_t k = 0; k < cv[i].n; k++) fprintf(d, "%.9g %.9g %.9g\n", cv[i].x[k], cv[i].train[k], cv[i].val[k]);
        if (fclose(d) != 0) die("cannot write %s: %s", dat, strerror(errno));
        // the held-out points of a run: the rows that have one, joined
        char *datv = xasprintf("%s/val%d.dat", dir, i);
        d = fopen(datv, "w");
        if (!d) die("cannot write %s: %s", datv, strerror(errno));
        for (size_t k = 0; k < cv[i].n; k++)
            if (!isnan(cv[i].val[k])) fprintf(d, "%.9g %.9g\n", cv[i].x[k], cv[i].val[k]);
        if (fclose(d) != 0) die("cannot write %s: %s", datv, strerror(errno));
        char *lt = xasprintf("%s train", cv[i].label), *lv = xasprintf("%s held-out", cv[i].label);
        if (cv[i].has_train) {
            fprintf(g, "%s'%s' using 1:2 with lines lw 1 lc %d title ", i ? ", " : "", dat, i + 1);
            gp_string(g, lt);
            fputs(", ", g);
        } else if (i) fputs(", ", g);
        fprintf(g, "'%s' using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc %d title ", datv, i + 1);
        gp_string(g, lv);
        free(lt); free(lv); free(dat); free(datv);
    }
    fputc('\n', g);
    if (fclose(g) != 0) die("cannot write %s: %s", script, strerror(errno));

    // gnuplot itself, its messages passed through; the PNG goes to OUT.tmp.png, renamed when it is complete
    pid_t pid = fork();
    if (pid < 0) die("cannot start gnuplot: %s", strerror(errno));
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        fprintf(stderr, "hgrn2: error: cannot run gnuplot: %s (install it: apt-get install gnuplot-nox; make setup "
                "does)\n", strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) die("waiting for gnuplot: %s", strerror(errno));
    int good = WIFEXITED(st) && WEXITSTATUS(st) == 0 && file_size(tmp_png) > 0;
    if (good && rename(tmp_png, out) != 0) die("cannot write %s: %s", out, strerror(errno));
    if (!good) remove(tmp_png);
    // the temporary folder and its files
    for (int i = 0; i < nruns; i++) {
        char *a = xasprintf("%s/run%d.dat", dir, i), *b = xasprintf("%s/val%d.dat", dir, i);
        remove(a); remove(b);
        free(a); free(b);
    }
    remove(script);
    rmdir(dir);
    if (!good) {
        if (WIFEXITED(st) && WEXITSTATUS(st) == 127) return 1;
        die("gnuplot failed (exit status %d); nothing was written to %s", WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
    }
    int64_t rows = 0;
    for (int i = 0; i < nruns; i++) rows += (int64_t)cv[i].n;
    printf("wrote %s: %d run%s, %lld rows\n", out, nruns, nruns == 1 ? "" : "s", (long long)rows);
    for (int i = 0; i < nruns; i++) { free(cv[i].label); free(cv[i].x); free(cv[i].train); free(cv[i].val); }
    free(cv); free(script); free(tmp_png);
    return 0;
}
