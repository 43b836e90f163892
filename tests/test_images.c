// test_images.c: image sets as example files of pixel tokens. `prepare` on fixtures of each official layout
// written here (CIFAR-10 binary batches, Pathfinder metadata lines and PNGs written through libpng, IDX files
// plain and gzip), read back through the example reader: pixels, labels, splits; every refusal (a truncated
// batch, a bad label, a bad IDX magic, a wrong image size) leaves nothing; bad metadata lines and unreadable
// PNGs skipped and counted, fatal with --strict. The Pathfinder generator's labels checked against its images
// by a flood fill of this test's own. Run from the repository root; writes under tests/tmp. Exits 1 on any
// failure. SHOWMSG=1 prints the message of every refusal.
#define _GNU_SOURCE
#include <png.h>
#include <sys/stat.h>
#include <zlib.h>

#include "../commands.h"
#include "../examples.h"
#include "../images.h"
#include "check.h"
#include "child.h"
#include "files.h"

#define TMP "tests/tmp/test_images"
#include "data_cmd.h"

// ---- commands in a child ----

// The command must fail with exit status rc and a message holding both fragments; with rc 1 it must leave
// no example file in dir (when dir is given).
static void expect_fail(const char *what, int rc, const char *cmd, const char *const *args, const char *frag1,
                        const char *frag2, const char *dir) {
    expect_msg_of(what, rc, cmd, args, frag1, frag2);
    if (dir) CHECK(!dir_has(dir, "examples"), "%s: a failed prepare left files in %s", what, dir);
}

// ---- reading the examples back ----

typedef struct { uint64_t n; int T; int32_t *labels, *tok; } Split;
static Split read_split(const char *dir, const char *split, int T, const char *desc) {
    Examples *e = example_open(dir, split);
    Split s = {example_count(e), T, 0, 0};
    CHECK(example_vocab(e) == 256 && example_pad(e) == 0 && example_ndoc(e) == 1 && (s.n == 0 || example_max_len(e) == (uint32_t)T),
          "%s/%s: vocabulary %u, pad %u, documents %d, longest %u", dir, split, example_vocab(e), example_pad(e), example_ndoc(e),
          example_max_len(e));
    CHECK(!strncmp(example_vocab_desc(e), desc, strlen(desc)), "%s/%s: description '%s', expected it to start '%s'", dir, split,
          example_vocab_desc(e), desc);
    s.labels = xmalloc((s.n + 1) * sizeof *s.labels);
    s.tok = xmalloc((s.n + 1) * (size_t)T * sizeof *s.tok);
    int32_t len;
    for (uint64_t i = 0; i < s.n; i++) {
        s.labels[i] = example_read(e, i, T, s.tok + i * (size_t)T, &len);
        CHECK(len == T, "%s/%s example %llu: %d tokens, expected %d", dir, split, (unsigned long long)i, len, T);
    }
    example_close(e);
    return s;
}
static void free_split(Split *s) { free(s->labels); free(s->tok); }

// The split of item i of n by the documented rule: example_permutation of seed 42, epoch 0; the first
// `train` positions of it train (0), the next `val` val (1), the rest test (2).
static int rule_split(const uint64_t *perm, uint64_t n, uint64_t i, uint64_t train, uint64_t val) {
    for (uint64_t k = 0; k < n; k++)
        if (perm[k] == i) return k < train ? 0 : k < train + val ? 1 : 2;
    return -1;
}

// ---- CIFAR-10 ----

// Record i's channel c at pixel p, distinct across records and channels.
static uint8_t cifar_px(int i, int c, int p) { return (uint8_t)(i * 29 + c * 101 + p * 7 + (p >> 5)); }

static void write_cifar(const char *dir, const char *name, int first, int n, int bad_label_at, size_t cut) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t size = (size_t)n * 3073;
    uint8_t *b = xmalloc(size);
    for (int k = 0; k < n; k++) {
        uint8_t *r = b + (size_t)k * 3073;
        r[0] = k == bad_label_at ? 10 : (uint8_t)((first + k) % 10);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 1024; p++) r[1 + c * 1024 + p] = cifar_px(first + k, c, p);
    }
    spit(path, b, size - cut);
    free(b);
}

// Whether example i of s is record rec: label and every pixel in (y, x, c) order.
static int is_cifar(const Split *s, uint64_t i, int rec) {
    const int32_t *t = s->tok + i * (size_t)s->T;
    if (s->labels[i] != rec % 10) return 0;
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 3; c++)
                if (t[(y * 32 + x) * 3 + c] != cifar_px(rec, c, y * 32 + x)) return 0;
    return 1;
}

static void make_cifar(const char *dir) {
    mkdir_p(dir);
    static const char *names[5] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"};
    for (int f = 0; f < 5; f++) write_cifar(dir, names[f], 4 * f, 4, -1, 0);   // records 0..19
    write_cifar(dir, "test_batch.bin", 100, 3, -1, 0);                          // records 100..102
}

static void test_cifar(void) {
    const char *dir = TMP "/cifar-10-batches-bin";
    make_cifar(dir);
    const char *args[] = {"--task", "lra-image", "--input", dir, "--out", TMP "/cifar", NULL};
    CHECK(run("prepare", args) == 0, "prepare lra-image failed: %s", err_text.p);
    CHECK(out_text.p && strstr(out_text.p, "prepare: lra-image: train 18, val 2, test 3 examples of 32x32x3 pixels (3072 tokens"),
          "summary: %s", out_text.p);
    const char *desc = "pixels 32x32x3";
    Split tr = read_split(TMP "/cifar", "train", 3072, desc), va = read_split(TMP "/cifar", "val", 3072, desc),
          te = read_split(TMP "/cifar", "test", 3072, desc);
    // train and val: the 20 training records in file order, val the two the permutation puts first
    uint64_t perm[20];
    example_permutation(42, 0, 20, perm);
    uint64_t it = 0, iv = 0;
    int bad = 0;
    for (int rec = 0; rec < 20; rec++) {
        int s = rule_split(perm, 20, (uint64_t)rec, 18, 2);
        if (s == 0) bad += !(it < tr.n && is_cifar(&tr, it++, rec));
        else bad += !(iv < va.n && is_cifar(&va, iv++, rec));
    }
    CHECK(!bad && it == tr.n && iv == va.n, "CIFAR train/val differ from the records (%d bad)", bad);
    CHECK(te.n == 3 && is_cifar(&te, 0, 100) && is_cifar(&te, 1, 101) && is_cifar(&te, 2, 102), "CIFAR test differs");
    Examples *e = example_open(TMP "/cifar", "train");
    CHECK(example_classes(e) == 10, "CIFAR classes %u", example_classes(e));
    example_close(e);
    free_split(&tr);
    free_split(&va);
    free_split(&te);
    expect_fail("lra-image over example files", 1, "prepare", args, TMP "/cifar", "already holds example files", NULL);

    // refusals: each names the file (and record); nothing is left under the output
    const char *bad_args[] = {"--task", "lra-image", "--input", dir, "--out", TMP "/cifar-bad", NULL};
    write_cifar(dir, "data_batch_3.bin", 8, 4, -1, 1000);   // cut inside its last record
    expect_fail("a truncated CIFAR batch", 1, "prepare", bad_args, "data_batch_3.bin", "not a whole number of 3073-byte records",
                TMP "/cifar-bad");
    write_cifar(dir, "data_batch_3.bin", 8, 4, -1, 0);
    write_cifar(dir, "data_batch_2.bin", 4, 4, 2, 0);
    expect_fail("a CIFAR label of 10", 1, "prepare", bad_args, "data_batch_2.bin: record 2: label 10", NULL, TMP "/cifar-bad");
    write_cifar(dir, "data_batch_2.bin", 4, 4, -1, 0);
    spit(TMP "/cifar-10-batches-bin/data_batch_4.bin", "", 0);
    expect_fail("an empty CIFAR batch", 1, "prepare", bad_args, "data_batch_4.bin", "0 bytes", TMP "/cifar-bad");
    write_cifar(dir, "data_batch_4.bin", 12, 4, -1, 0);
    unlink(TMP "/cifar-10-batches-bin/test_batch.bin");
    expect_fail("no CIFAR test batch", 1, "prepare", bad_args, "test_batch.bin", "No such file", TMP "/cifar-bad");
    make_fifo(TMP "/cifar-10-batches-bin/test_batch.bin");
    expect_fail("a CIFAR batch that is a FIFO", 1, "prepare", bad_args, "test_batch.bin", "not a regular file", TMP "/cifar-bad");
}

// ---- Fashion-MNIST ----

static uint8_t fm_px(int i, int p) { return (uint8_t)(i * 53 + p * 3 + (p / 28)); }
static void put_be32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

// The IDX files of one set: n images from record number first (rows x cols), and their labels; gzip when gz.
typedef struct { uint32_t img_magic, lab_magic, rows, cols, nlab; int bad_label_at; size_t cut; } IdxFlaws;   // bad_label_at: record + 1
static void write_idx(const char *dir, const char *prefix, int first, int n, int gz, IdxFlaws fl) {
    uint32_t rows = fl.rows ? fl.rows : 28, cols = fl.cols ? fl.cols : 28;
    uint32_t nlab = fl.nlab ? fl.nlab : (uint32_t)n;   // a labels file of another count is consistent in itself
    size_t isize = 16 + (size_t)n * rows * cols, lsize = 8 + (size_t)nlab;
    uint8_t *im = xmalloc(isize), *lb = xmalloc(lsize);
    put_be32(im, fl.img_magic ? fl.img_magic : 0x803);
    put_be32(im + 4, (uint32_t)n);
    put_be32(im + 8, rows);
    put_be32(im + 12, cols);
    put_be32(lb, fl.lab_magic ? fl.lab_magic : 0x801);
    put_be32(lb + 4, nlab);
    for (int k = 0; k < n; k++)
        for (uint32_t p = 0; p < rows * cols; p++) im[16 + (size_t)k * rows * cols + p] = fm_px(first + k, (int)p);
    for (int k = 0; k < (int)nlab; k++) lb[8 + k] = k + 1 == fl.bad_label_at ? 11 : (uint8_t)((first + k) * 3 % 10);
    char ip[256], lp[256];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");
    if (!gz) {
        spit(ip, im, isize - fl.cut);
        spit(lp, lb, lsize);
    } else {
        const uint8_t *data[2] = {im, lb};
        size_t sizes[2] = {isize, lsize};
        const char *paths[2] = {ip, lp};
        for (int f = 0; f < 2; f++) {
            gzFile g = gzopen(paths[f], "wb");
            if (!g || gzwrite(g, data[f], (unsigned)sizes[f]) != (int)sizes[f] || gzclose(g) != Z_OK) die("test: gzip %s failed", paths[f]);
        }
        if (fl.cut) {   // the compressed file cut short
            Bytes b = read_bytes(ip);
            spit(ip, b.p, b.n - fl.cut);
            free(b.p);
        }
    }
    free(im);
    free(lb);
}

static int is_fm(const Split *s, uint64_t i, int rec) {
    const int32_t *t = s->tok + i * (size_t)s->T;
    if (s->labels[i] != rec * 3 % 10) return 0;
    for (int p = 0; p < 784; p++)
        if (t[p] != fm_px(rec, p)) return 0;
    return 1;
}

static void test_fashion_mnist(void) {
    const char *dir = TMP "/fmnist";
    mkdir_p(dir);
    write_idx(dir, "train", 0, 30, 0, (IdxFlaws){0});      // plain
    write_idx(dir, "t10k", 500, 5, 1, (IdxFlaws){0});      // gzip
    const char *args[] = {"--task", "fashion-mnist", "--input", dir, "--out", TMP "/fm", NULL};
    CHECK(run("prepare", args) == 0, "prepare fashion-mnist failed: %s", err_text.p);
    CHECK(out_text.p && strstr(out_text.p, "prepare: fashion-mnist: train 27, val 3, test 5 examples of 28x28x1 pixels (784 tokens"),
          "summary: %s", out_text.p);
    const char *desc = "pixels 28x28x1";
    Split tr = read_split(TMP "/fm", "train", 784, desc), va = read_split(TMP "/fm", "val", 784, desc),
          te = read_split(TMP "/fm", "test", 784, desc);
    uint64_t perm[30];
    example_permutation(42, 0, 30, perm);
    uint64_t it = 0, iv = 0;
    int bad = 0;
    for (int rec = 0; rec < 30; rec++) {
        if (rule_split(perm, 30, (uint64_t)rec, 27, 3) == 0) bad += !(it < tr.n && is_fm(&tr, it++, rec));
        else bad += !(iv < va.n && is_fm(&va, iv++, rec));
    }
    CHECK(!bad && it == tr.n && iv == va.n, "Fashion-MNIST train/val differ from the records (%d bad)", bad);
    bad = te.n != 5;
    for (int k = 0; k < 5 && !bad; k++) bad = !is_fm(&te, (uint64_t)k, 500 + k);
    CHECK(!bad, "Fashion-MNIST test differs");
    free_split(&tr);
    free_split(&va);
    free_split(&te);

    // refusals
    const char *b[] = {"--task", "fashion-mnist", "--input", dir, "--out", TMP "/fm-bad", NULL};
    write_idx(dir, "train", 0, 30, 0, (IdxFlaws){.img_magic = 0x801});
    expect_fail("an IDX images file with the labels' magic", 1, "prepare", b, "train-images-idx3-ubyte: magic number 0x00000801",
                "expected 0x00000803", TMP "/fm-bad");
    write_idx(dir, "train", 0, 30, 0, (IdxFlaws){.rows = 27});
    expect_fail("IDX images of 27x28", 1, "prepare", b, "train-images-idx3-ubyte", "27x28 pixels", TMP "/fm-bad");
    write_idx(dir, "train", 0, 30, 0, (IdxFlaws){.cut = 100});
    expect_fail("a truncated IDX file", 1, "prepare", b, "train-images-idx3-ubyte", "truncated", TMP "/fm-bad");
    write_idx(dir, "train", 0, 30, 0, (IdxFlaws){.nlab = 29});
    expect_fail("IDX counts that differ", 1, "prepare", b, "30 images", "29 labels", TMP "/fm-bad");
    write_idx(dir, "train", 0, 30, 0, (IdxFlaws){.bad_label_at = 8});
    expect_fail("an IDX label of 11", 1, "prepare", b, "train-labels-idx1-ubyte: record 7: label 11", NULL, TMP "/fm-bad");
    write_idx(dir, "train", 0, 30, 0, (IdxFlaws){0});
    write_idx(dir, "t10k", 500, 5, 1, (IdxFlaws){.cut = 30});
    expect_fail("a truncated gzip IDX file", 1, "prepare", b, "t10k-images-idx3-ubyte.gz", NULL, TMP "/fm-bad");
    write_idx(dir, "t10k", 500, 5, 1, (IdxFlaws){0});
    unlink(TMP "/fmnist/t10k-labels-idx1-ubyte.gz");
    expect_fail("no t10k labels", 1, "prepare", b, "t10k-labels-idx1-ubyte", "No such file", TMP "/fm-bad");

    // Debian's dataset-fashion-mnist (make setup installs it): the real files, gzip
    const char *deb = "/usr/share/datasets/fashion-mnist";
    if (access(deb, R_OK) == 0) {
        const char *real[] = {"--task", "fashion-mnist", "--input", deb, "--out", TMP "/fm-real", NULL};
        CHECK(run("prepare", real) == 0, "prepare of %s failed: %s", deb, err_text.p);
        CHECK(out_text.p && strstr(out_text.p, "train 54000, val 6000, test 10000 examples of 28x28x1"), "summary: %s", out_text.p);
        rmrf(TMP "/fm-real");
    } else
        printf("SKIP the real Fashion-MNIST: %s not found (make setup installs dataset-fashion-mnist)\n", deb);
}

// ---- Pathfinder: fixtures ----

static uint8_t pf_px(int i, int p) { return (uint8_t)(i * 41 + p * 11 + (p >> 5) * 3); }

// A PNG of image i written through libpng: 8-bit gray, or RGB with the gray value in every channel.
static void write_png(const char *path, int i, int w, int h, int rgb) {
    int C = rgb ? 3 : 1;
    uint8_t *px = xmalloc((size_t)w * h * C);
    for (int p = 0; p < w * h; p++)
        for (int c = 0; c < C; c++) px[(size_t)p * C + c] = pf_px(i, p);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = rgb ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    if (!png_image_write_to_file(&im, path, 0, px, w * C, NULL)) die("test: writing %s failed: %s", path, im.message);
    free(px);
}

static int is_pf(const Split *s, uint64_t i, int img, int label, int tol) {
    const int32_t *t = s->tok + i * (size_t)s->T;
    if (s->labels[i] != label) return 0;
    for (int p = 0; p < 1024; p++)
        if (abs(t[p] - pf_px(img, p)) > tol) return 0;
    return 1;
}

static void test_pathfinder_fixture(void) {
    const char *root = TMP "/pf";
    mkdir_p(TMP "/pf/metadata");
    mkdir_p(TMP "/pf/imgs/0");
    mkdir_p(TMP "/pf/imgs/1");
    char path[256];
    for (int i = 0; i < 15; i++) {
        snprintf(path, sizeof path, TMP "/pf/imgs/%d/g%d.png", i < 5 ? 0 : 1, i);
        write_png(path, i, 32, 32, 0);
    }
    write_png(TMP "/pf/imgs/0/rgb.png", 20, 32, 32, 1);
    // corrupt: a byte of the image data flipped (its chunk's CRC no longer matches); truncated: half a file
    Bytes g = read_bytes(TMP "/pf/imgs/0/g0.png");
    uint8_t *idat = memmem(g.p, g.n, "IDAT", 4);
    if (!idat) die("test: no IDAT in the PNG libpng wrote");
    spit(TMP "/pf/imgs/0/trunc.png", g.p, g.n / 2);
    idat[6] ^= 0x55;
    spit(TMP "/pf/imgs/0/corrupt.png", g.p, g.n);
    free(g.p);
    spit(TMP "/pf/imgs/0/empty.png", "", 0);
    spits(TMP "/pf/metadata/0.npy",
          "imgs/0 g0.png 0 1 1.0 14 4 2 0.5 1 1\n"   // the official layout: label in the fourth field
          "imgs/0 g1.png 1 0\r\n"                    // four fields, CRLF
          "imgs/0 g2.png 2\n"                        // line 3: three fields
          "   \n"                                    // blank: passed over
          "imgs/0 g3.png 3 2 1.0\n"                  // line 5: label 2
          "../pf/imgs/0 g4.png 4 1\n"                // line 6: leaves the folder
          "imgs/0 rgb.png 5 1\n"                     // RGB: converted to gray
          "imgs/0 corrupt.png 6 0\n"                 // unreadable images: skipped, counted
          "imgs/0 trunc.png 7 1\n"
          "imgs/0 missing.png 8 0\n"
          "imgs/0 empty.png 9 1");                   // no line end at the end
    // 2.npy comes before 10.npy: metadata files are read in the order of their numbers
    spits(TMP "/pf/metadata/10.npy", "imgs/1 g10.png 0 0\nimgs/1 g11.png 1 1\nimgs/1 g12.png 2 0\nimgs/1 g13.png 3 1\nimgs/1 g14.png 4 0\n");
    spits(TMP "/pf/metadata/2.npy", "imgs/1 g5.png 0 1\nimgs/1 g6.png 1 0\nimgs/1 g7.png 2 1\nimgs/1 g8.png 3 0\nimgs/1 g9.png 4 1\n");
    spits(TMP "/pf/metadata/notes.txt", "not metadata\n");
    const char *args[] = {"--task", "lra-pathfinder", "--input", root, "--out", TMP "/pfex", NULL};
    CHECK(run("prepare", args) == 0, "prepare lra-pathfinder failed: %s", err_text.p);
    // 17 good metadata lines: 13 train, 1 val, 3 test before the 4 unreadable images are dropped
    CHECK(out_text.p && strstr(out_text.p, "examples of 32x32x1 pixels (1024 tokens, vocabulary 256); 3 bad metadata lines "
                                           "skipped, 4 unreadable images skipped"),
          "summary: %s", out_text.p);
    CHECK(err_text.p && strstr(err_text.p, "metadata/0.npy:3: 3 fields, expected at least 4") &&
              strstr(err_text.p, "metadata/0.npy:5: the label (fourth field) '2' is not 0 or 1") &&
              strstr(err_text.p, "metadata/0.npy:6: the folder or file name") && strstr(err_text.p, "corrupt.png: corrupt or truncated PNG"),
          "warnings: %s", err_text.p);
    // the entries in reading order: image number (-1 unreadable), label, whether RGB
    static const int img[17] = {0, 1, 20, -1, -1, -1, -1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    static const int lab[17] = {1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0};
    const char *desc = "pixels 32x32x1";
    Split sp[3] = {read_split(TMP "/pfex", "train", 1024, desc), read_split(TMP "/pfex", "val", 1024, desc),
                   read_split(TMP "/pfex", "test", 1024, desc)};
    uint64_t perm[17], at[3] = {0};
    example_permutation(42, 0, 17, perm);
    int bad = 0;
    for (int i = 0; i < 17; i++) {
        if (img[i] < 0) continue;
        int s = rule_split(perm, 17, (uint64_t)i, 13, 1);
        bad += !(at[s] < sp[s].n && is_pf(&sp[s], at[s], img[i], lab[i], img[i] == 20 ? 1 : 0));
        at[s]++;
    }
    CHECK(!bad && at[0] == sp[0].n && at[1] == sp[1].n && at[2] == sp[2].n, "Pathfinder examples differ from the fixture (%d bad)", bad);
    for (int s = 0; s < 3; s++) free_split(&sp[s]);

    // --strict: the first bad line stops the run; an unreadable image too
    const char *strict[] = {"--task", "lra-pathfinder", "--input", root, "--out", TMP "/pf-strict", "--strict", NULL};
    expect_fail("Pathfinder --strict", 1, "prepare", strict, "metadata/0.npy:3:", "3 fields", TMP "/pf-strict");
    spits(TMP "/pf/metadata/0.npy", "imgs/0 g0.png 0 1\nimgs/0 trunc.png 7 1\n");
    expect_fail("Pathfinder --strict on a truncated PNG", 1, "prepare", strict, "trunc.png", "corrupt or truncated PNG", TMP "/pf-strict");
    // an image of the wrong size is the wrong task: fatal, not skipped
    write_png(TMP "/pf/imgs/1/g7.png", 7, 33, 32, 0);
    const char *b[] = {"--task", "lra-pathfinder", "--input", root, "--out", TMP "/pf-bad", NULL};
    expect_fail("a 33x32 Pathfinder image", 1, "prepare", b, "g7.png: 33x32 pixels", "lra-pathfinder takes 32x32", TMP "/pf-bad");
    const char *x[] = {"--task", "lra-pathx", "--input", root, "--out", TMP "/pf-bad", NULL};
    expect_fail("Path-X of 32x32 images", 1, "prepare", x, "g0.png: 32x32 pixels", "lra-pathx takes 128x128", TMP "/pf-bad");
    // every line bad: no training examples; no metadata folder
    rmrf(TMP "/pf/metadata");
    mkdir_p(TMP "/pf/metadata");
    spits(TMP "/pf/metadata/0.npy", "a b c\n");
    expect_fail("Pathfinder without a good line", 1, "prepare", b, "no images", NULL, TMP "/pf-bad");
    rmrf(TMP "/pf/metadata");
    expect_fail("Pathfinder without metadata", 1, "prepare", b, "pf/metadata", "No such file", TMP "/pf-bad");
}

// ---- the generator, checked by a flood fill of this test's own ----

// Reads a generated PNG through libpng (not the program's reader); 0 on failure.
static int load_gray(const char *path, int size, uint8_t *px) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) return 0;
    if (im.width != (png_uint_32)size || im.height != (png_uint_32)size || (im.format & PNG_FORMAT_FLAG_COLOR)) {
        png_image_free(&im);
        return 0;
    }
    im.format = PNG_FORMAT_GRAY;
    return png_image_finish_read(&im, NULL, px, size, NULL) != 0;
}

// Labels lit pixels reachable from the seeds: pixels of value >= lo, joined when within Chebyshev distance r.
// Returns the count of reached pixels; reached[] set to 1 for them.
static int flood(const uint8_t *px, int S, int lo, int r, const int *seeds, int nseeds, uint8_t *reached, int *stack) {
    memset(reached, 0, (size_t)S * S);
    int sp = 0, n = 0;
    for (int i = 0; i < nseeds; i++)
        if (!reached[seeds[i]]) { reached[seeds[i]] = 1; stack[sp++] = seeds[i]; n++; }
    while (sp) {
        int p = stack[--sp], x = p % S, y = p / S;
        for (int yy = y - r; yy <= y + r; yy++)
            for (int xx = x - r; xx <= x + r; xx++) {
                if (xx < 0 || yy < 0 || xx >= S || yy >= S) continue;
                int q = yy * S + xx;
                if (!reached[q] && px[q] >= lo) { reached[q] = 1; stack[sp++] = q; n++; }
            }
    }
    return n;
}

// Whether the image's two markers are joined. The check knows only what an image shows: markers are the
// pixels of value 255 (paths are drawn darker), and must form exactly two blobs (8-connected); a path's
// dashes are at most `bridge` pixels apart on each axis, and different paths farther apart than that (the
// documented geometry), so a flood fill over lit pixels that jumps up to `bridge` pixels joins exactly the
// dashes of one path. It reads no label and no state of the generator. Returns 1 joined, 0 not, -1 when the
// image does not show two markers. *joined8 says whether they are joined without jumps (8-connected).
static int markers_joined(const uint8_t *px, int S, int bridge, int *joined8) {
    static uint8_t reached[128 * 128], blob[128 * 128];
    static int stack[128 * 128], seeds[128 * 128];
    int first = -1;
    for (int p = 0; p < S * S && first < 0; p++)
        if (px[p] == 255) first = p;
    if (first < 0) return -1;
    int na = flood(px, S, 255, 1, &first, 1, blob, stack), total = 0, second = -1;
    for (int p = 0; p < S * S; p++)
        if (px[p] == 255) {
            total++;
            if (!blob[p] && second < 0) second = p;
        }
    if (second < 0) return -1;
    int nb = flood(px, S, 255, 1, &second, 1, reached, stack);
    if (na + nb != total) return -1;   // a third blob
    int ns = 0;
    for (int p = 0; p < S * S; p++)
        if (blob[p]) seeds[ns++] = p;
    flood(px, S, 1, 1, seeds, ns, reached, stack);
    *joined8 = reached[second];
    flood(px, S, 1, bridge, seeds, ns, reached, stack);
    return reached[second];
}

// Generates count images of size S and checks each against its metadata label.
static void check_generated(int S, int bridge, uint64_t count, const char *dir) {
    uint8_t *px = xmalloc((size_t)S * S);
    int wrong = 0, unmarked = 0, lines = 0, positive = 0, dashed = 0, badline = 0;
    for (uint64_t b = 0; b * PATHFINDER_BATCH < count; b++) {
        char path[256];
        snprintf(path, sizeof path, "%s/metadata/%llu.npy", dir, (unsigned long long)b);
        Text t = slurp(path);
        CHECK(t.p != NULL, "%s is missing", path);
        if (!t.p) continue;
        int k = 0;
        for (char *line = t.p; line < t.p + t.n; k++) {
            char *eol = strchr(line, '\n');
            if (!eol) { badline++; break; }
            *eol = 0;
            char folder[64], file[64], want_folder[64], want_file[64];
            int num, label;
            snprintf(want_folder, sizeof want_folder, "imgs/%llu", (unsigned long long)b);
            snprintf(want_file, sizeof want_file, "sample_%d.png", k);
            if (sscanf(line, "%63s %63s %d %d", folder, file, &num, &label) != 4 || strcmp(folder, want_folder) ||
                strcmp(file, want_file) || num != k || (label != 0 && label != 1)) {
                badline++;
                line = eol + 1;
                continue;
            }
            lines++;
            char img[300];
            snprintf(img, sizeof img, "%s/%s/%s", dir, folder, file);
            int j8 = 0, j = load_gray(img, S, px) ? markers_joined(px, S, bridge, &j8) : -1;
            if (j < 0) unmarked++;
            else if (j != label) wrong++;
            positive += label;
            dashed += label && !j8;
            line = eol + 1;
        }
        CHECK(k == (int)(count - b * PATHFINDER_BATCH < PATHFINDER_BATCH ? count - b * PATHFINDER_BATCH : PATHFINDER_BATCH),
              "%s holds %d lines", path, k);
        free(t.p);
    }
    CHECK(lines == (int)count && !badline, "%d metadata lines of %llu in the official layout, %d not", lines, (unsigned long long)count,
          badline);
    CHECK(!unmarked, "%d of %d images do not show exactly two markers", unmarked, lines);
    CHECK(!wrong, "%d of %d labels disagree with the flood fill", wrong, lines);
    CHECK(positive * 2 == lines, "%d positive of %d", positive, lines);
    // the paths are dashed: without the jumps, the markers of most positive images are not joined
    CHECK(dashed * 10 >= positive * 9, "only %d of %d positive images are dashed between their markers", dashed, positive);
    printf("generated %dx%d: %d images, %d positive, %d of them dashed between the markers, every label matches the flood fill\n",
           S, S, lines, positive, dashed);
    free(px);
}

static int same_files(const char *a, const char *b) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "diff -r -q '%s' '%s' >/dev/null 2>&1", a, b);
    return system(cmd) == 0;
}

static void test_generator(void) {
    // 1001 images: a full batch of 1000 and one more
    const char *a[] = {"--task", "pathfinder", "--size", "32", "--out", TMP "/gen32", "--seed", "3", "--count", "1001", NULL};
    CHECK(run("generate", a) == 0, "generate pathfinder 32 failed: %s", err_text.p);
    // an odd count: the last image has no partner and either label, so the summary may say 500 or 501 positive
    CHECK(out_text.p && strstr(out_text.p, "generate: pathfinder32: 1001 images of 32x32 (") && strstr(out_text.p, "positive) in 2 batches"),
          "summary: %s", out_text.p);
    const PathfinderGeometry *g32 = pathfinder_geometry(32), *g128 = pathfinder_geometry(128);
    CHECK(g32 && g128 && g32->bridge == 2 && g128->bridge == 4, "the documented bridges are 2 and 4");
    check_generated(32, 2, 1000, TMP "/gen32");   // the flood fill's count check wants pairs: the first 1000
    const char *b[] = {"--task", "pathfinder", "--size", "128", "--out", TMP "/gen128", "--seed", "3", "--count", "60", NULL};
    CHECK(run("generate", b) == 0, "generate pathfinder 128 failed: %s", err_text.p);
    check_generated(128, 4, 60, TMP "/gen128");

    // the same seed gives the same bytes, another seed others
    const char *again[] = {"--task", "pathfinder", "--size", "128", "--out", TMP "/gen128b", "--seed", "3", "--count", "60", NULL};
    const char *other[] = {"--task", "pathfinder", "--size", "128", "--out", TMP "/gen128c", "--seed", "4", "--count", "60", NULL};
    CHECK(run("generate", again) == 0 && run("generate", other) == 0, "generate failed: %s", err_text.p);
    CHECK(same_files(TMP "/gen128", TMP "/gen128b"), "two runs with seed 3 differ");
    CHECK(!same_files(TMP "/gen128", TMP "/gen128c"), "seeds 3 and 4 give the same files");

    // prepare reads what the generator wrote
    const char *p[] = {"--task", "lra-pathfinder", "--input", TMP "/gen32", "--out", TMP "/gen32ex", NULL};
    CHECK(run("prepare", p) == 0, "prepare of generated images failed: %s", err_text.p);
    CHECK(out_text.p && strstr(out_text.p, "train 800, val 100, test 101 examples of 32x32x1 pixels (1024 tokens, vocabulary 256); "
                                           "0 bad metadata lines skipped, 0 unreadable images skipped"),
          "summary: %s", out_text.p);
    const char *px[] = {"--task", "lra-pathx", "--input", TMP "/gen128", "--out", TMP "/gen128ex", NULL};
    CHECK(run("prepare", px) == 0 && out_text.p && strstr(out_text.p, "train 48, val 6, test 6 examples of 128x128x1 pixels (16384 tokens"),
          "prepare lra-pathx: %s %s", out_text.p, err_text.p);
    Split s = read_split(TMP "/gen128ex", "train", 16384, "pixels 128x128x1");
    free_split(&s);
    expect_fail("generate over existing files", 1, "generate", a, "already holds metadata/ or imgs/", NULL, NULL);
}

// ---- usage errors ----

static void test_usage(void) {
    typedef struct { const char *cmd, *what, *args[14], *frag; } Usage;
    static const Usage u[] = {
        {"generate", "pathfinder without --size", {"--task", "pathfinder", "--out", TMP "/u", NULL}, "needs --size"},
        {"generate", "pathfinder --size 64", {"--task", "pathfinder", "--size", "64", "--out", TMP "/u", NULL}, "--size must be 32 or 128"},
        {"generate", "pathfinder --count 1", {"--task", "pathfinder", "--size", "32", "--count", "1", "--out", TMP "/u", NULL}, "--count"},
        {"generate", "pathfinder --train-size", {"--task", "pathfinder", "--size", "32", "--train-size", "5", "--out", TMP "/u", NULL},
         "--train-size does not apply to --task pathfinder"},
        {"generate", "listops --size", {"--task", "listops", "--size", "32", "--out", TMP "/u", NULL}, "--size does not apply to --task listops"},
        {"prepare", "lra-image --strict", {"--task", "lra-image", "--input", TMP, "--out", TMP "/u", "--strict", NULL},
         "--strict does not apply to --task lra-image"},
        {"prepare", "fashion-mnist --max-line-bytes", {"--task", "fashion-mnist", "--input", TMP, "--out", TMP "/u", "--max-line-bytes", "4096", NULL},
         "--max-line-bytes does not apply"},
        {"prepare", "lra-pathx --tokenizer", {"--task", "lra-pathx", "--input", TMP, "--out", TMP "/u", "--tokenizer", "byte", NULL},
         "--tokenizer does not apply to --task lra-pathx"},
        {"prepare", "lra-image two inputs", {"--task", "lra-image", "--input", TMP, TMP, "--out", TMP "/u", NULL}, "takes one --input folder"},
    };
    for (size_t i = 0; i < sizeof u / sizeof *u; i++) expect_fail(u[i].what, 2, u[i].cmd, u[i].args, u[i].frag, "usage:", NULL);
    CHECK(access(TMP "/u", F_OK) != 0, "a refused command created its directory");
}

int main(void) {
    if (system("rm -rf " TMP) != 0) die("test: cannot clear " TMP);
    mkdir_p(TMP);
    double t0 = now_s();
    test_cifar();
    test_fashion_mnist();
    test_pathfinder_fixture();
    test_generator();
    test_usage();
    printf("test_images: %.1f s\n", now_s() - t0);
    free(out_text.p);
    free(err_text.p);
    return check_summary("test_images");
}
