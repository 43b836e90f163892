// images.c: `hgrn2 prepare` for image classification: CIFAR-10's binary batches (the Long Range Arena's Image
// task), Pathfinder and Path-X (metadata lines and PNGs, decoded with libpng), Fashion-MNIST's IDX files
// (plain or gzip). Every image becomes one document of pixel tokens. Formats and choices: docs/images.md.
#define _GNU_SOURCE
#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "examples.h"
#include "images.h"
#include "input.h"
#include "tokenizer.h"

static const char *const TASK_NAMES[] = {"lra-image", "lra-pathfinder", "lra-pathx", "fashion-mnist"};
static const char *const SPLITS[3] = {"train", "val", "test"};

// Records, images or metadata lines one run takes at most: far above every official set (Pathfinder's
// largest has 200,000 images), low enough that the split tables stay small whatever a file claims.
#define IMAGE_RECORDS_MAX (1u << 24)
#define CIFAR_SIDE 32
#define CIFAR_RECORD (1 + 3 * CIFAR_SIDE * CIFAR_SIDE)
#define FMNIST_SIDE 28
#define PATH_FIELD_MAX 1024      // bytes of a metadata line's directory or file name

const char *image_task_name(ImageTask task) { return (unsigned)task < 4 ? TASK_NAMES[task] : NULL; }

int image_task_parse(const char *name, ImageTask *task) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, TASK_NAMES[i])) { *task = (ImageTask)i; return 0; }
    return -1;
}

// ----------------------------------------------------------------------------------------------------------
// PNG through libpng's simplified API, which converts any color type and bit depth to 8-bit gray

int png_read_gray(const char *path, int size, uint8_t *pixels, int *w, int *h, char *err, size_t errlen) {
    int64_t fsize;
    int fd = open_regular(path, &fsize, err, errlen);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        close(fd);
        return -1;
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    int rc = 0;
    if (!png_image_begin_read_from_stdio(&im, f)) {
        snprintf(err, errlen, "not a readable PNG (%s)", im.message);
        rc = -1;
    } else if (im.width != (png_uint_32)size || im.height != (png_uint_32)size) {
        *w = (int)im.width;
        *h = (int)im.height;
        snprintf(err, errlen, "%ux%u pixels, expected %dx%d", im.width, im.height, size, size);
        png_image_free(&im);
        rc = -2;
    } else {
        im.format = PNG_FORMAT_GRAY;
        // An alpha channel is composited onto black, the background of every Pathfinder image.
        png_color black = {0, 0, 0};
        if (!png_image_finish_read(&im, &black, pixels, size, NULL)) {
            snprintf(err, errlen, "corrupt or truncated PNG (%s)", im.message);
            rc = -1;
        }
    }
    fclose(f);
    return rc;
}

void png_write_gray(const char *path, int w, int h, const uint8_t *pixels) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = PNG_FORMAT_GRAY;
    if (!png_image_write_to_file(&im, path, 0, pixels, w, NULL)) die("writing %s failed: %s", path, im.message);
}

// ----------------------------------------------------------------------------------------------------------
// The run: outputs, counters, progress

typedef struct {
    uint64_t examples, skipped;
} SplitOut;

typedef struct {
    const ImagePrepareOptions *o;
    SplitOut split[3];
    SplitFile files[3];          // the outputs (examples.h)
    int H, W, C;
    int32_t *tok;                // one image's tokens
    uint64_t bytes_in, bad_lines, warned;
    double t0, last_print;
    int tty;
} Run;

static void progress(Run *r, const char *what, int final) {
    double t = now_s();
    if (final && !r->tty) return;
    if (!final && t - r->last_print < (r->tty ? 0.25 : 5.0)) return;
    r->last_print = t;
    uint64_t n = r->split[0].examples + r->split[1].examples + r->split[2].examples;
    double el = t - r->t0 > 1e-9 ? t - r->t0 : 1e-9;
    fprintf(stderr, "%sprepare: %s: %s, %llu images, %.1f MB read, %.1f MB/s%s", r->tty ? "\r" : "",
            image_task_name(r->o->task), what, (unsigned long long)n, (double)r->bytes_in / 1e6,
            (double)r->bytes_in / 1e6 / el, r->tty ? "\x1b[K" : "\n");
    if (final && r->tty) fputc('\n', stderr);
}

// A bad metadata line or image (Pathfinder): fatal with --strict; otherwise skipped, counted by the caller,
// the first five reported.
__attribute__((format(printf, 3, 4)))
static void bad_input(Run *r, const char *where, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->o->strict) die("%s: %s", where, msg);
    if (++r->warned <= 5)
        fprintf(stderr, "hgrn2 prepare: warning: %s: %s; skipped (--strict makes this an error)\n", where, msg);
}

static void emit(Run *r, int s, int32_t label) {
    const int32_t *docs[1] = {r->tok};
    uint32_t len = (uint32_t)(r->H * r->W * r->C);
    example_writer_add(r->files[s].w, label, docs, &len);
    r->split[s].examples++;
}

// Each split is written to OUT/<split>.examples.part and renamed when all three are complete; registered
// for removal first, so that a failure anywhere leaves no final name.
static void outputs_open(Run *r) {
    char *desc = xasprintf("pixels %dx%dx%d: row-major, %svalues 0-255%s\n", r->H, r->W, r->C,
                           r->C > 1 ? "channels interleaved (y, x, c), " : "", r->C == 1 ? " (gray)" : " (RGB)");
    ExampleSpec spec = {.vocab_size = IMAGE_VOCAB, .pad_id = IMAGE_PAD, .nclasses = r->o->task == IMAGE_PATHFINDER ||
                        r->o->task == IMAGE_PATHX ? 2 : 10, .ndoc = 1, .desc = desc};
    split_files_open(r->files, r->o->out, &spec);
    free(desc);
    r->tok = xmalloc((size_t)r->H * r->W * r->C * sizeof *r->tok);
}

static void require_dir(const char *dir, const char *what) {
    struct stat st;
    if (stat(dir, &st) != 0) die("cannot read %s %s: %s", what, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) die("%s %s is not a directory", what, dir);
}

// The split of each of n items: the permutation of IMAGE_SPLIT_SEED puts them in an order; the first
// `train` of that order go to train (0), the next `val` to val (1), the rest to test (2).
static uint8_t *assign_splits(uint64_t n, uint64_t train, uint64_t val) {
    uint64_t *perm = xmalloc((n ? n : 1) * sizeof *perm);
    example_permutation(IMAGE_SPLIT_SEED, 0, n, perm);
    uint8_t *split = xmalloc(n ? n : 1);
    for (uint64_t k = 0; k < n; k++) split[perm[k]] = k < train ? 0 : k < train + val ? 1 : 2;
    free(perm);
    return split;
}

// ----------------------------------------------------------------------------------------------------------
// CIFAR-10: cifar-10-batches-bin/data_batch_{1..5}.bin and test_batch.bin; a record is the label byte, then
// 1024 R, 1024 G and 1024 B bytes, each plane row-major 32x32.

static void cifar(Run *r) {
    static const char *const NAMES[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                         "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    char *path[6];
    uint64_t records[6], ntrain = 0;
    // Every file is checked before anything is written.
    for (int f = 0; f < 6; f++) {
        path[f] = xasprintf("%s/%s", r->o->input, NAMES[f]);
        struct stat st;
        if (stat(path[f], &st) != 0) die("cannot read input %s: %s", path[f], strerror(errno));
        if (!S_ISREG(st.st_mode)) die("input %s is not a regular file", path[f]);
        if (st.st_size == 0 || st.st_size % CIFAR_RECORD != 0)
            die("%s: %lld bytes is not a whole number of %d-byte records (a label byte and 32x32x3 pixels): a "
                "truncated or foreign file", path[f], (long long)st.st_size, CIFAR_RECORD);
        records[f] = (uint64_t)st.st_size / CIFAR_RECORD;
        if (records[f] > IMAGE_RECORDS_MAX) die("%s: %llu records, more than the %u this reads", path[f],
                                                (unsigned long long)records[f], IMAGE_RECORDS_MAX);
        if (f < 5) ntrain += records[f];
    }
    uint8_t *split = assign_splits(ntrain, ntrain - ntrain / 10, ntrain / 10);
    r->H = r->W = CIFAR_SIDE;
    r->C = 3;
    outputs_open(r);
    uint8_t rec[CIFAR_RECORD];
    uint64_t index = 0;
    for (int f = 0; f < 6; f++) {
        uint64_t size;
        int fd = data_open_regular(path[f], "input", &size);
        if (size != records[f] * CIFAR_RECORD) die("%s changed while it was read", path[f]);
        for (uint64_t k = 0; k < records[f]; k++) {
            data_pread(fd, rec, CIFAR_RECORD, k * CIFAR_RECORD, path[f]);
            if (rec[0] > 9) die("%s: record %llu: label %u is not a class 0-9", path[f], (unsigned long long)k, rec[0]);
            // planar R, G, B -> interleaved (y, x, c)
            for (int p = 0; p < CIFAR_SIDE * CIFAR_SIDE; p++)
                for (int c = 0; c < 3; c++) r->tok[3 * p + c] = rec[1 + c * CIFAR_SIDE * CIFAR_SIDE + p];
            emit(r, f < 5 ? split[index++] : 2, rec[0]);
            r->bytes_in += CIFAR_RECORD;
            progress(r, f < 5 ? "training batches" : "test batch", 0);
        }
        close(fd);
    }
    for (int f = 0; f < 6; f++) free(path[f]);
    free(split);
}

// ----------------------------------------------------------------------------------------------------------
// Fashion-MNIST: IDX files, big-endian: images magic 0x00000803, count, rows, columns, then the pixels;
// labels magic 0x00000801, count, then one byte each. Plain or gzip (zlib reads either).

typedef struct {
    char *path;
    gzFile gz;
    uint64_t record;     // records read so far
} Idx;

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

// Reads exactly n bytes; dies naming the file and what was being read at a short read.
static void idx_read(Idx *x, void *buf, unsigned n, const char *what) {
    int got = gzread(x->gz, buf, n);
    if (got < 0) {
        int e;
        const char *m = gzerror(x->gz, &e);
        die("%s: reading %s failed: %s", x->path, what, e == Z_ERRNO ? strerror(errno) : m);
    }
    if ((unsigned)got != n) {
        int e;
        const char *m = gzerror(x->gz, &e);
        if (e != Z_OK && e != Z_BUF_ERROR) die("%s: reading %s failed: %s", x->path, what, m);
        die("%s: the file ends inside %s: truncated", x->path, what);
    }
}

// Opens DIR/name, or DIR/name.gz when that is what there is; checks the header and that the file holds
// exactly what the header says (the size of a plain file, the gzip trailer's length of a compressed one)
// before anything is allocated. Returns the count of records; dims[0..ndim) their dimensions.
static uint64_t idx_open(Idx *x, const char *dir, const char *name, uint32_t magic, int ndim, uint32_t *dims) {
    x->path = xasprintf("%s/%s", dir, name);
    if (access(x->path, F_OK) != 0) {
        char *gz = xasprintf("%s.gz", x->path);
        if (access(gz, F_OK) != 0) die("cannot read input %s (nor %s.gz): %s", x->path, name, strerror(errno));
        free(x->path);
        x->path = gz;
    }
    uint64_t size;
    int fd = data_open_regular(x->path, "input", &size);
    uint8_t head[16], tail[4];
    int gzipped = 0;
    if (size >= 2) {
        data_pread(fd, head, 2, 0, x->path);
        gzipped = head[0] == 0x1f && head[1] == 0x8b;
    }
    if (gzipped && size >= 18) data_pread(fd, tail, 4, size - 4, x->path);
    if (!(x->gz = gzdopen(fd, "rb"))) die("%s: cannot open: %s", x->path, strerror(errno));
    int hbytes = 4 * (1 + ndim);
    idx_read(x, head, (unsigned)hbytes, "the header");
    if (be32(head) != magic)
        die("%s: magic number 0x%08x, expected 0x%08x (IDX %s): not a Fashion-MNIST %s file", x->path, be32(head), magic,
            magic == 0x803 ? "images" : "labels", magic == 0x803 ? "images" : "labels");
    uint64_t n = be32(head + 4), record = 1;
    for (int d = 1; d < ndim; d++) {
        dims[d] = be32(head + 4 + 4 * d);
        record *= dims[d];
    }
    dims[0] = (uint32_t)n;
    if (n == 0 || n > IMAGE_RECORDS_MAX) die("%s: %llu records, expected 1 to %u", x->path, (unsigned long long)n, IMAGE_RECORDS_MAX);
    if (ndim == 3 && (dims[1] != FMNIST_SIDE || dims[2] != FMNIST_SIDE))
        die("%s: images of %ux%u pixels, expected %dx%d", x->path, dims[1], dims[2], FMNIST_SIDE, FMNIST_SIDE);
    uint64_t expect = (uint64_t)hbytes + n * record;
    if (!gzipped && size != expect)
        die("%s: %llu bytes, but its header announces %llu records of %llu bytes (%llu bytes): truncated or padded",
            x->path, (unsigned long long)size, (unsigned long long)n, (unsigned long long)record, (unsigned long long)expect);
    if (gzipped && (size < 18 || (uint32_t)(tail[0] | tail[1] << 8 | tail[2] << 16 | (uint32_t)tail[3] << 24) != (uint32_t)expect))
        die("%s: the gzip trailer's length does not match the %llu records of %llu bytes its header announces: "
            "truncated or foreign", x->path, (unsigned long long)n, (unsigned long long)record);
    return n;
}

static void idx_close(Idx *x) {
    uint8_t extra;
    if (gzread(x->gz, &extra, 1) != 0) die("%s: bytes after the last record", x->path);
    gzclose(x->gz);
    free(x->path);
}

// One set (train or t10k): its images and labels, record by record.
static void fmnist_set(Run *r, const char *prefix, const uint8_t *split, int test) {
    char in[64], ln[64];
    snprintf(in, sizeof in, "%s-images-idx3-ubyte", prefix);
    snprintf(ln, sizeof ln, "%s-labels-idx1-ubyte", prefix);
    Idx xi = {0}, xl = {0};
    uint32_t di[3], dl[1];
    uint64_t n = idx_open(&xi, r->o->input, in, 0x803, 3, di), nl = idx_open(&xl, r->o->input, ln, 0x801, 1, dl);
    if (n != nl) die("%s holds %llu images but %s %llu labels", xi.path, (unsigned long long)n, xl.path, (unsigned long long)nl);
    uint8_t px[FMNIST_SIDE * FMNIST_SIDE], label;
    char what[64];
    for (uint64_t k = 0; k < n; k++) {
        snprintf(what, sizeof what, "record %llu", (unsigned long long)k);
        idx_read(&xi, px, sizeof px, what);
        idx_read(&xl, &label, 1, what);
        if (label > 9) die("%s: record %llu: label %u is not a class 0-9", xl.path, (unsigned long long)k, label);
        for (int p = 0; p < FMNIST_SIDE * FMNIST_SIDE; p++) r->tok[p] = px[p];
        emit(r, test ? 2 : split[k], label);
        r->bytes_in += sizeof px + 1;
        progress(r, test ? "test set" : "training set", 0);
    }
    idx_close(&xi);
    idx_close(&xl);
}

static void fashion_mnist(Run *r) {
    // Both sets' headers are checked before anything is written (each is opened again to be read).
    Idx x = {0};
    uint32_t d[3];
    uint64_t ntrain = idx_open(&x, r->o->input, "train-images-idx3-ubyte", 0x803, 3, d);
    gzclose(x.gz);
    free(x.path);
    const char *other[3] = {"train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    for (int i = 0; i < 3; i++) {
        idx_open(&x, r->o->input, other[i], i == 1 ? 0x803 : 0x801, i == 1 ? 3 : 1, d);
        gzclose(x.gz);
        free(x.path);
    }
    uint8_t *split = assign_splits(ntrain, ntrain - ntrain / 10, ntrain / 10);
    r->H = r->W = FMNIST_SIDE;
    r->C = 1;
    outputs_open(r);
    fmnist_set(r, "train", split, 0);
    fmnist_set(r, "t10k", NULL, 1);
    free(split);
}

// ----------------------------------------------------------------------------------------------------------
// Pathfinder and Path-X: DIR/metadata/*.npy are text, one image a line, fields separated by spaces: the
// image's folder, its file name, its number, the label (0 or 1), then the generator's parameters; the image
// is DIR/<folder>/<file name>, an 8-bit grayscale PNG.

typedef struct {
    uint64_t *off;       // per entry: the offset of its relative path in names
    uint8_t *label;
    uint64_t n, cap;
    ByteBuf names;       // "folder/file\0" one after the other
} Entries;

// Metadata files in the order of their numbers (0.npy, 1.npy, ..., 10.npy), other names after them by bytes.
static int meta_cmp(const void *a, const void *b) {
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    char *ex, *ey;
    unsigned long long nx = strtoull(x, &ex, 10), ny = strtoull(y, &ey, 10);
    int dx = ex != x && !strcmp(ex, ".npy"), dy = ey != y && !strcmp(ey, ".npy");
    if (dx != dy) return dy - dx;
    if (dx && nx != ny) return nx < ny ? -1 : 1;
    return strcmp(x, y);
}

// A path field: not empty, not absolute, no "." or ".." part, no control bytes: an image must lie in DIR.
static int safe_field(const char *s, size_t n) {
    if (n == 0 || n > PATH_FIELD_MAX || s[0] == '/') return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20) return 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j] != '/') j++;
        if ((j - i == 1 && s[i] == '.') || (j - i == 2 && s[i] == '.' && s[i + 1] == '.')) return 0;
        i = j + 1;
    }
    return 1;
}

// One metadata line into e, or a bad line reported (where: "FILE:LINE").
static void meta_line(Run *r, Entries *e, const char *where, const char *line, size_t n) {
    const char *f[4];
    size_t fl[4];
    int k = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i == n) break;
        size_t j = i;
        while (j < n && line[j] != ' ' && line[j] != '\t') j++;
        if (k < 4) { f[k] = line + i; fl[k] = j - i; }
        k++;
        i = j;
    }
    if (k < 4) {
        bad_input(r, where, "%d fields, expected at least 4 (folder, file name, number, label)", k);
        r->bad_lines++;
        return;
    }
    if (fl[3] != 1 || (f[3][0] != '0' && f[3][0] != '1')) {
        char show[48];
        snprintf(show, sizeof show, "%.*s", (int)(fl[3] < 40 ? fl[3] : 40), f[3]);
        for (char *c = show; *c; c++)
            if ((unsigned char)*c < 0x20) *c = '?';
        bad_input(r, where, "the label (fourth field) '%s' is not 0 or 1", show);
        r->bad_lines++;
        return;
    }
    if (!safe_field(f[0], fl[0]) || !safe_field(f[1], fl[1])) {
        bad_input(r, where, "the folder or file name is empty, absolute, longer than %d bytes or leaves the folder", PATH_FIELD_MAX);
        r->bad_lines++;
        return;
    }
    if (e->n == IMAGE_RECORDS_MAX) die("%s: more than %u images in the metadata", where, IMAGE_RECORDS_MAX);
    if (e->n == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 4096;
        e->off = xrealloc(e->off, e->cap * sizeof *e->off);
        e->label = xrealloc(e->label, e->cap);
    }
    e->off[e->n] = e->names.n;
    e->label[e->n] = (uint8_t)(f[3][0] - '0');
    e->n++;
    bytebuf_append(&e->names, f[0], fl[0]);
    bytebuf_append(&e->names, "/", 1);
    bytebuf_append(&e->names, f[1], fl[1]);
    bytebuf_append(&e->names, "", 1);
}

static void read_metadata(Run *r, Entries *e) {
    char *dir = xasprintf("%s/metadata", r->o->input);
    require_dir(dir, "metadata folder");
    size_t nn;
    char **names = dir_names(dir, dir_keep_suffix, ".npy", &nn);
    if (!nn) die("%s holds no metadata files (*.npy)", dir);
    qsort(names, nn, sizeof *names, meta_cmp);
    for (size_t i = 0; i < nn; i++) {
        char *path = xasprintf("%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) die("metadata %s is not a regular file", path);
        InStream in;
        input_open(&in, path, &r->bytes_in);
        LineReader lr = {.in = &in, .max = r->o->max_line_bytes};
        const char *line;
        size_t n;
        int k;
        char where[PATH_FIELD_MAX + 64];
        while ((k = next_line(&lr, &line, &n)) != LINE_END) {
            snprintf(where, sizeof where, "%s:%llu", path, (unsigned long long)lr.lineno);
            if (k == LINE_SKIPPED) {
                bad_input(r, where, "line longer than %zu bytes (--max-line-bytes)", r->o->max_line_bytes);
                r->bad_lines++;
                continue;
            }
            if (n && line[n - 1] == '\n') n--;
            if (n && line[n - 1] == '\r') n--;
            size_t b = 0;
            while (b < n && (line[b] == ' ' || line[b] == '\t')) b++;
            if (b == n) continue;   // blank
            if (memchr(line, 0, n)) {
                bad_input(r, where, "a NUL byte in the line");
                r->bad_lines++;
                continue;
            }
            meta_line(r, e, where, line, n);
        }
        free(lr.buf);
        input_close(&in);
        free(path);
        free(names[i]);
    }
    free(names);
    free(dir);
}

static void pathfinder(Run *r, int side) {
    Entries e = {0};
    read_metadata(r, &e);
    if (!e.n) die("no images: every metadata line of %s/metadata was skipped", r->o->input);
    uint64_t ntrain = e.n * 8 / 10, nval = e.n / 10;
    uint8_t *split = assign_splits(e.n, ntrain, nval);
    r->H = r->W = side;
    r->C = 1;
    outputs_open(r);
    uint8_t *px = xmalloc((size_t)side * side);
    char err[256];
    for (uint64_t i = 0; i < e.n; i++) {
        const char *rel = e.names.data + e.off[i];
        char *path = xasprintf("%s/%s", r->o->input, rel);
        int w = 0, h = 0, rc = png_read_gray(path, side, px, &w, &h, err, sizeof err);
        if (rc == -2)
            die("%s: %dx%d pixels, but %s takes %dx%d images (%s reads %dx%d)", path, w, h, image_task_name(r->o->task),
                side, side, side == 32 ? "lra-pathx" : "lra-pathfinder", side == 32 ? 128 : 32, side == 32 ? 128 : 32);
        if (rc < 0) {
            bad_input(r, path, "%s", err);
            r->split[split[i]].skipped++;
        } else {
            for (int p = 0; p < side * side; p++) r->tok[p] = px[p];
            emit(r, split[i], e.label[i]);
            r->bytes_in += (uint64_t)side * side;
        }
        free(path);
        progress(r, "images", 0);
    }
    free(px);
    free(split);
    free(e.off);
    free(e.label);
    free(e.names.data);
}

// ----------------------------------------------------------------------------------------------------------

int images_prepare(const ImagePrepareOptions *o) {
    const char *task = image_task_name(o->task);
    if (!task) die("prepare: unknown image task %d", (int)o->task);
    if (!o->input || !o->out) die("prepare: an input folder and an output directory are required");
    if ((o->task == IMAGE_PATHFINDER || o->task == IMAGE_PATHX) &&
        (o->max_line_bytes < PREPARE_MAX_LINE_MIN || o->max_line_bytes > PREPARE_MAX_LINE_MAX))
        die("prepare: a longest line of %zu bytes is outside [%u, %u]", o->max_line_bytes, PREPARE_MAX_LINE_MIN,
            PREPARE_MAX_LINE_MAX);
    require_dir(o->input, "input folder");
    for (int s = 0; s < 3; s++) {
        char *f = xasprintf("%s/%s" EXAMPLES_SUFFIX, o->out, SPLITS[s]);
        if (file_exists(f)) die("%s already holds example files (%s); remove them or choose another --out", o->out, f);
        free(f);
    }
    Run r = {.o = o, .tty = isatty(2)};
    r.t0 = r.last_print = now_s();
    // The output folder is made once the inputs' names are known to be there.
    if (o->task == IMAGE_PATHFINDER || o->task == IMAGE_PATHX) {
        char *m = xasprintf("%s/metadata", o->input);
        require_dir(m, "metadata folder");
        free(m);
    }
    mkdir_p(o->out);
    switch (o->task) {
    case IMAGE_CIFAR: cifar(&r); break;
    case IMAGE_PATHFINDER: pathfinder(&r, 32); break;
    case IMAGE_PATHX: pathfinder(&r, 128); break;
    case IMAGE_FASHION_MNIST: fashion_mnist(&r); break;
    }
    if (r.split[0].examples == 0) die("no training examples: %s holds no image that could be read", o->input);
    uint64_t n[3], skipped = 0;
    for (int s = 0; s < 3; s++) {
        n[s] = r.split[s].examples;
        skipped += r.split[s].skipped;
    }
    int H = r.H, W = r.W, C = r.C;
    split_files_finish(r.files);
    free(r.tok);
    progress(&r, "done", 1);
    double el = now_s() - r.t0;
    printf("prepare: %s: train %llu, val %llu, test %llu examples of %dx%dx%d pixels (%d tokens, vocabulary %d)", task,
           (unsigned long long)n[0], (unsigned long long)n[1], (unsigned long long)n[2], H, W, C, H * W * C, IMAGE_VOCAB);
    if (o->task == IMAGE_PATHFINDER || o->task == IMAGE_PATHX)
        printf("; %llu bad metadata line%s skipped, %llu unreadable image%s skipped", (unsigned long long)r.bad_lines,
               r.bad_lines == 1 ? "" : "s", (unsigned long long)skipped, skipped == 1 ? "" : "s");
    printf("; %.1f MB read in %.1f s; wrote %s\n", (double)r.bytes_in / 1e6, el, o->out);
    fflush(stdout);
    return 0;
}
