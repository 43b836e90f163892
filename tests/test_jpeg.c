// test_jpeg.c: the JPEG layer, the resampling, the recipe's crops and `prepare --task imagenet`. JPEGs written
// here with libjpeg-turbo directly (RGB, grayscale, Adobe CMYK, progressive; 1x1, 3x500, 640x480) decode
// within JPEG error; truncated, garbage, empty and oversized files are refused with a reason. The bicubic
// resize is compared with a double-precision reference written here from the kernel's formula; the crop
// sampler's boxes stay in range, cover the range, repeat for equal (seed, epoch, index) and change across
// epochs. prepare on a 3-class folder layout and on lists: contents read back (labels, short sides, images
// decodable), the same bytes for 1 and 3 threads, unreadable images counted and skipped, every refusal
// (missing train/, a val class train lacks, an empty class folder, a list line without a label, a label out
// of range) leaving no file. Run from the repository root; writes under tests/tmp. Exits 1 on any failure.
#define _GNU_SOURCE
#include <math.h>
#include <sys/stat.h>

#include "../commands.h"
#include "../data.h"
#include "../imagenet.h"
#include "../jpeg.h"
#include "check.h"
#include "child.h"
#include "files.h"

#define TMP "tests/tmp/test_jpeg"
#include "data_cmd.h"

// ---- test images and this test's own encoder ----

// A smooth pattern (JPEG keeps it well) with a different phase per channel.
static uint8_t *pattern(int w, int h, int seed) {
    uint8_t *p = xmalloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                p[((size_t)y * w + x) * 3 + c] =
                    (uint8_t)(128 + 90 * sin(x / (9.0 + c + seed) + c) * cos(y / (11.0 + seed) - c) + 0.5);
    return p;
}

#ifndef HGRN2_NO_JPEG
#include <stdio.h>
#include <jpeglib.h>

static double mean_abs(const uint8_t *a, const uint8_t *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)a[i] - b[i]);
    return n ? s / n : 0;
}

// px holds `comps` bytes a pixel in color space cs; libjpeg writes CMYK with its Adobe marker (inverted).
static Bytes encode(const uint8_t *px, int w, int h, J_COLOR_SPACE cs, int comps, int progressive, int quality) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    Bytes b = {xmalloc(size), size};
    memcpy(b.p, buf, size);
    free(buf);
    return b;
}

static Bytes encode_rgb(const uint8_t *px, int w, int h, int progressive) { return encode(px, w, h, JCS_RGB, 3, progressive, 95); }

static Bytes encode_gray(const uint8_t *rgb, int w, int h) {
    uint8_t *g = xmalloc((size_t)w * h);
    for (size_t i = 0; i < (size_t)w * h; i++) g[i] = rgb[3 * i];
    Bytes b = encode(g, w, h, JCS_GRAYSCALE, 1, 0, 95);
    free(g);
    return b;
}

// Adobe's inverted CMYK of the RGB image with ink k' (255: no black): C' = R, M' = G, Y' = B, so the decoded
// RGB is rgb x k' / 255.
static Bytes encode_cmyk(const uint8_t *rgb, int w, int h, uint8_t k) {
    uint8_t *q = xmalloc((size_t)w * h * 4);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        memcpy(q + 4 * i, rgb + 3 * i, 3);
        q[4 * i + 3] = k;
    }
    Bytes b = encode(q, w, h, JCS_CMYK, 4, 0, 95);
    free(q);
    return b;
}

// ---- decoding and encoding ----

static void check_decode(const char *what, Bytes jpg, const uint8_t *expect, int w, int h, double tol) {
    uint8_t *rgb = NULL;
    int dw = 0, dh = 0, warn = -1;
    char err[256] = "";
    int rc = jpeg_decode_rgb(jpg.p, jpg.n, &rgb, &dw, &dh, &warn, err, sizeof err);
    CHECK(rc == 0 && dw == w && dh == h && warn == 0, "%s: decode rc %d, %dx%d (expected %dx%d), %d warnings: %s", what,
          rc, dw, dh, w, h, warn, err);
    if (rc == 0 && dw == w && dh == h) {
        char name[96];
        snprintf(name, sizeof name, "decode %s: mean |error| per channel", what);
        near(name, mean_abs(rgb, expect, (size_t)w * h * 3), tol);
    }
    free(rgb);
}

static void test_decode(void) {
    uint8_t *img = pattern(640, 480, 0);
    Bytes b = encode_rgb(img, 640, 480, 0);
    check_decode("rgb 640x480", b, img, 640, 480, 2.0);
    free(b.p);
    b = encode_rgb(img, 640, 480, 1);
    check_decode("progressive 640x480", b, img, 640, 480, 2.0);
    free(b.p);
    free(img);
    // gray: R = G = B = the gray value
    img = pattern(37, 23, 1);
    for (int i = 0; i < 37 * 23; i++) img[3 * i + 1] = img[3 * i + 2] = img[3 * i];
    b = encode_gray(img, 37, 23);
    check_decode("gray 37x23", b, img, 37, 23, 1.5);
    free(b.p);
    free(img);
    // CMYK: no black, then k' = 200 (every channel x 200/255)
    img = pattern(64, 48, 2);
    b = encode_cmyk(img, 64, 48, 255);
    check_decode("cmyk 64x48", b, img, 64, 48, 2.0);
    free(b.p);
    b = encode_cmyk(img, 64, 48, 200);
    uint8_t *dark = xmalloc(64 * 48 * 3);
    for (int i = 0; i < 64 * 48 * 3; i++) dark[i] = (uint8_t)((img[i] * 200 + 127) / 255);
    check_decode("cmyk 64x48 with black", b, dark, 64, 48, 2.5);
    free(b.p);
    free(dark);
    free(img);
    // odd sizes
    int sizes[4][2] = {{1, 1}, {3, 500}, {500, 3}, {17, 9}};
    for (int k = 0; k < 4; k++) {
        int w = sizes[k][0], h = sizes[k][1];
        img = xmalloc((size_t)w * h * 3);
        memset(img, 90 + 20 * k, (size_t)w * h * 3);
        b = encode_rgb(img, w, h, k == 1);
        char what[32];
        snprintf(what, sizeof what, "flat %dx%d", w, h);
        check_decode(what, b, img, w, h, 1.0);
        free(b.p);
        free(img);
    }
    // jpeg_encode_rgb, read back through this test's decoder of the library
    img = pattern(123, 77, 3);
    uint8_t *enc = NULL;
    size_t n = 0;
    char err[256];
    CHECK(jpeg_encode_rgb(img, 123, 77, 92, &enc, &n, err, sizeof err) == 0 && n > 100, "jpeg_encode_rgb failed: %s", err);
    check_decode("jpeg_encode_rgb 123x77 q92", (Bytes){enc, n}, img, 123, 77, 2.5);
    CHECK(jpeg_encode_rgb(img, 123, 77, 0, &enc, &n, err, sizeof err) == -1, "quality 0 accepted");
    free(enc);
    free(img);
}

static void expect_refused(const char *what, const uint8_t *p, size_t n, const char *frag) {
    uint8_t *rgb = (uint8_t *)1;
    int w, h;
    char err[256] = "";
    int rc = jpeg_decode_rgb(p, n, &rgb, &w, &h, NULL, err, sizeof err);
    CHECK(rc == -1 && rgb == NULL && err[0] && (!frag || strstr(err, frag)), "%s: rc %d, err '%s' (expected '%s')", what, rc,
          err, frag ? frag : "");
    if (getenv("SHOWMSG")) printf("[%s] %s\n", what, err);
}

// The offset of the start-of-frame marker's height field (SOF0 or SOF2), or 0.
static size_t sof_dims(const Bytes *b) {
    for (size_t i = 2; i + 9 < b->n; i++)
        if (b->p[i] == 0xFF && (b->p[i + 1] == 0xC0 || b->p[i + 1] == 0xC2)) return i + 5;
    return 0;
}

static void test_refusals(void) {
    uint8_t *img = pattern(200, 150, 4);
    Bytes good = encode_rgb(img, 200, 150, 0);
    expect_refused("truncated to half", good.p, good.n / 2, "truncated");
    Bytes prog = encode_rgb(img, 200, 150, 1);
    expect_refused("progressive truncated", prog.p, prog.n * 2 / 3, "truncated");
    expect_refused("header only", good.p, 300, NULL);
    uint8_t garbage[4096];
    uint64_t s = 7;
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (uint8_t)splitmix64(&s);
    expect_refused("garbage", garbage, sizeof garbage, NULL);
    expect_refused("empty", good.p, 0, "empty");
    // too large a side, too many pixels: refused from the header alone
    size_t d = sof_dims(&good);
    CHECK(d > 0, "no SOF marker found in the test's own JPEG");
    if (d) {
        Bytes big = {xmalloc(good.n), good.n};
        memcpy(big.p, good.p, good.n);
        big.p[d + 2] = (uint8_t)(40000 >> 8);   // width 40000
        big.p[d + 3] = (uint8_t)(40000 & 255);
        expect_refused("40000 pixels wide", big.p, big.n, "larger than");
        big.p[d] = big.p[d + 2] = (uint8_t)(20000 >> 8);   // 20000 x 20000 = 4e8 pixels
        big.p[d + 1] = big.p[d + 3] = (uint8_t)(20000 & 255);
        expect_refused("20000x20000", big.p, big.n, "larger than");
        // within the limits, but more pixels than the file's bytes can code (512 a byte): refused from the header,
        // where libjpeg would have decoded what data there was and padded the rest
        big.p[d] = big.p[d + 2] = (uint8_t)(4000 >> 8);   // 4000 x 4000 = 1.6e7 pixels in a few KB
        big.p[d + 1] = big.p[d + 3] = (uint8_t)(4000 & 255);
        CHECK((uint64_t)4000 * 4000 > (uint64_t)big.n * JPEG_PIXELS_PER_BYTE, "the test's JPEG is too large (%zu bytes)", big.n);
        expect_refused("4000x4000 in a small file", big.p, big.n, "more than a complete JPEG");
        free(big.p);
    }
    {   // the bound leaves room: a flat 2048 x 2048 image, the cheapest there is to code, decodes baseline and progressive
        uint8_t *flat = xmalloc((size_t)2048 * 2048 * 3);
        memset(flat, 77, (size_t)2048 * 2048 * 3);
        for (int prog = 0; prog < 2; prog++) {
            Bytes f = encode(flat, 2048, 2048, JCS_RGB, 3, prog, 50);
            CHECK((uint64_t)2048 * 2048 <= (uint64_t)f.n * JPEG_PIXELS_PER_BYTE, "flat 2048x2048 (%s) in %zu bytes: above the bound",
                  prog ? "progressive" : "baseline", f.n);
            if (getenv("SHOWMSG")) printf("[flat 2048x2048 %s] %zu bytes\n", prog ? "progressive" : "baseline", f.n);
            // a gray of 77 comes back as 76 or 78 through YCbCr's rounding: 1.5 is one level and a half
            check_decode(prog ? "flat 2048x2048 progressive" : "flat 2048x2048", f, flat, 2048, 2048, 1.5);
            free(f.p);
        }
        free(flat);
    }
    // damage in the entropy-coded data: either refused or decoded with warnings counted, never a crash
    Bytes bad = {xmalloc(good.n), good.n};
    memcpy(bad.p, good.p, good.n);
    for (size_t i = good.n / 2; i < good.n / 2 + 64; i++) bad.p[i] ^= 0x5A;
    uint8_t *rgb = NULL;
    int w, h, warn = 0;
    char err[256];
    int rc = jpeg_decode_rgb(bad.p, bad.n, &rgb, &w, &h, &warn, err, sizeof err);
    CHECK(rc == -1 || (w == 200 && h == 150 && warn > 0), "damaged data: rc %d, %d warnings", rc, warn);
    free(rgb);
    free(bad.p);
    free(good.p);
    free(prog.p);
    free(img);
}
#endif

// ---- resampling against a reference ----

// The bicubic kernel with a = -0.5, written from Keys' formula.
static double keys(double t) {
    t = fabs(t);
    if (t <= 1) return 1.5 * t * t * t - 2.5 * t * t + 1;
    if (t < 2) return -0.5 * t * t * t + 2.5 * t * t - 4 * t + 2;
    return 0;
}

// out(j, i) = sum over the box of wy(j, y) wx(i, x) src(y, x), each axis's weights normalised over the box;
// the kernel stretched by the shrink factor when shrinking.
static void reference_resize(const uint8_t *src, int sw, ImageBox b, uint8_t *dst, int dw, int dh) {
    double sx = (double)b.w / dw, sy = (double)b.h / dh, fx = sx > 1 ? sx : 1, fy = sy > 1 ? sy : 1;
    double *wx = xmalloc((size_t)b.w * sizeof *wx), *wy = xmalloc((size_t)b.h * sizeof *wy);
    for (int j = 0; j < dh; j++) {
        double cy = (j + 0.5) * sy, ty = 0;
        for (int y = 0; y < b.h; y++) ty += wy[y] = keys((y + 0.5 - cy) / fy);
        for (int i = 0; i < dw; i++) {
            double cx = (i + 0.5) * sx, tx = 0;
            for (int x = 0; x < b.w; x++) tx += wx[x] = keys((x + 0.5 - cx) / fx);
            for (int c = 0; c < 3; c++) {
                double v = 0;
                for (int y = 0; y < b.h; y++)
                    for (int x = 0; x < b.w; x++)
                        v += wy[y] / ty * wx[x] / tx * src[((size_t)(b.y + y) * sw + b.x + x) * 3 + c];
                v = v < 0 ? 0 : v > 255 ? 255 : v;
                dst[((size_t)j * dw + i) * 3 + c] = (uint8_t)floor(v + 0.5);
            }
        }
    }
    free(wx);
    free(wy);
}

static void test_resize(void) {
    int sw = 61, sh = 47;
    uint8_t *src = xmalloc((size_t)sw * sh * 3);
    uint64_t s = 11;
    for (int i = 0; i < sw * sh * 3; i++) src[i] = (uint8_t)splitmix64(&s);   // noise: every tap matters
    struct { ImageBox b; int dw, dh; const char *what; } cases[] = {
        {{0, 0, 61, 47}, 17, 13, "shrink 61x47 to 17x13"},
        {{0, 0, 61, 47}, 150, 101, "enlarge 61x47 to 150x101"},
        {{0, 0, 61, 47}, 61, 47, "same size"},
        {{0, 0, 61, 47}, 40, 90, "shrink x, enlarge y"},
        {{7, 5, 23, 31}, 9, 30, "box 23x31 at (7, 5) to 9x30"},
        {{60, 46, 1, 1}, 5, 4, "one pixel to 5x4"},
        {{0, 0, 61, 47}, 1, 1, "to 1x1"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int dw = cases[k].dw, dh = cases[k].dh;
        uint8_t *got = xmalloc((size_t)dw * dh * 3), *want = xmalloc((size_t)dw * dh * 3);
        image_resize(src, sw, sh, cases[k].b, got, dw, dh);
        reference_resize(src, sw, cases[k].b, want, dw, dh);
        int worst = 0;
        for (int i = 0; i < dw * dh * 3; i++) {
            int d = abs((int)got[i] - want[i]);
            if (d > worst) worst = d;
        }
        char name[96];
        snprintf(name, sizeof name, "resize %s: max |difference| from the reference", cases[k].what);
        near(name, worst, 1);
        if (cases[k].dw == sw && cases[k].dh == sh)
            CHECK(!memcmp(got, src, (size_t)sw * sh * 3), "a resize to the same size is not the identity");
        free(got);
        free(want);
    }
    // a flat image stays flat, exactly, whatever the scale
    memset(src, 173, (size_t)sw * sh * 3);
    uint8_t out[23 * 19 * 3];
    image_resize(src, sw, sh, (ImageBox){0, 0, sw, sh}, out, 23, 19);
    int flat = 1;
    for (size_t i = 0; i < sizeof out; i++) flat &= out[i] == 173;
    CHECK(flat, "a flat image is not flat after resizing");
    // the short side
    int w, h;
    image_short_side(500, 375, 256, &w, &h);
    CHECK(w == 341 && h == 256, "short side of 500x375 to 256: %dx%d, expected 341x256", w, h);
    image_short_side(3, 500, 256, &w, &h);
    CHECK(w == 256 && h == 42666, "short side of 3x500 to 256: %dx%d, expected 256x42666", w, h);
    free(src);
}

// ---- the crop sampler and the transforms ----

static void test_crops(void) {
    int W = 500, H = 375, n = 20000, fits = 0;
    double amin = 1, amax = 0, rlo = 10, rhi = 0, xs = 0;
    for (int i = 0; i < n; i++) {
        uint64_t s = image_rng(5, 0, (uint64_t)i);
        int att;
        ImageBox b = image_random_crop(W, H, &s, 0.08, 1.0, 3.0 / 4, 4.0 / 3, &att);
        if (b.x < 0 || b.y < 0 || b.w < 1 || b.h < 1 || b.x + b.w > W || b.y + b.h > H) {
            CHECK(0, "crop %d: box %dx%d at (%d, %d) leaves the %dx%d image", i, b.w, b.h, b.x, b.y, W, H);
            break;
        }
        if (att == 0) continue;
        fits++;
        double a = (double)b.w * b.h / ((double)W * H), r = (double)b.w / b.h;
        // w and h are rounded from the drawn area and ratio: allow for half a pixel each
        double tol = 1 + 1.0 / (b.w < b.h ? b.w : b.h);
        CHECK(a >= 0.08 / (tol * tol) && a <= 1.0 * tol * tol, "crop %d: area fraction %.4f outside [0.08, 1]", i, a);
        CHECK(r >= 0.75 / (tol * tol) && r <= 4.0 / 3 * (tol * tol), "crop %d: ratio %.4f outside [3/4, 4/3]", i, r);
        if (a < amin) amin = a;
        if (a > amax) amax = a;
        if (r < rlo) rlo = r;
        if (r > rhi) rhi = r;
        xs += (b.x + b.w / 2.0) / W;
    }
    CHECK(fits > n * 99 / 100, "only %d of %d draws fit in 10 attempts", fits, n);
    CHECK(amin < 0.085 && amax > 0.95, "areas cover [%.3f, %.3f], expected most of [0.08, 1]", amin, amax);
    CHECK(rlo < 0.76 && rhi > 1.32, "ratios cover [%.3f, %.3f], expected most of [0.75, 1.333]", rlo, rhi);
    CHECK(fabs(xs / fits - 0.5) < 0.01, "crop centers average %.4f of the width, expected 0.5", xs / fits);
    // the boxes against torchvision's get_params written out here, on the same draws: uniform area and
    // log-uniform ratio, Python's round (half to even), positions uniform in [0, H - h] and [0, W - w]
    int agree = 0;
    for (int i = 0; i < 2000; i++) {
        int w = i % 3 ? 500 : 40, h = i % 3 == 1 ? 120 : 375;
        uint64_t a = image_rng(2, 1, (uint64_t)i), b = a;
        ImageBox got = image_random_crop(w, h, &a, 0.08, 1.0, 0.75, 4.0 / 3, NULL), want = {-1, -1, -1, -1};
        for (int t = 0; t < 10 && want.w < 0; t++) {
            double area = w * h * (0.08 + 0.92 * rng_uniform(&b));
            double ratio = exp(log(0.75) + (log(4.0 / 3) - log(0.75)) * rng_uniform(&b));
            double cw = rint(sqrt(area * ratio)), ch = rint(sqrt(area / ratio));
            if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
                want.w = (int)cw;
                want.h = (int)ch;
                want.y = (int)(((unsigned __int128)splitmix64(&b) * (uint64_t)(h - want.h + 1)) >> 64);
                want.x = (int)(((unsigned __int128)splitmix64(&b) * (uint64_t)(w - want.w + 1)) >> 64);
            }
        }
        agree += want.w < 0 || !memcmp(&got, &want, sizeof got);
    }
    CHECK(agree == 2000, "%d of 2000 boxes differ from get_params written out", 2000 - agree);
    // determinism and epochs: the same (seed, epoch, index) draws the same box; another epoch or seed others
    int same = 0, diff_epoch = 0, diff_seed = 0;
    for (int i = 0; i < 200; i++) {
        uint64_t a = image_rng(9, 3, (uint64_t)i), b = image_rng(9, 3, (uint64_t)i), c = image_rng(9, 4, (uint64_t)i),
                 d = image_rng(10, 3, (uint64_t)i);
        ImageBox ba = image_random_crop(W, H, &a, 0.08, 1, 0.75, 4.0 / 3, NULL), bb = image_random_crop(W, H, &b, 0.08, 1, 0.75, 4.0 / 3, NULL),
                 bc = image_random_crop(W, H, &c, 0.08, 1, 0.75, 4.0 / 3, NULL), bd = image_random_crop(W, H, &d, 0.08, 1, 0.75, 4.0 / 3, NULL);
        same += !memcmp(&ba, &bb, sizeof ba);
        diff_epoch += !!memcmp(&ba, &bc, sizeof ba);
        diff_seed += !!memcmp(&ba, &bd, sizeof ba);
    }
    CHECK(same == 200, "equal (seed, epoch, index) drew different boxes %d times of 200", 200 - same);
    CHECK(diff_epoch >= 195 && diff_seed >= 195, "another epoch drew a different box %d times, another seed %d, of 200",
          diff_epoch, diff_seed);
    // the fallback: a 1000x10 strip fits no crop of ratio <= 4/3 and area >= 8%: the centered 13x10
    uint64_t s = image_rng(1, 0, 0);
    int att = -1;
    ImageBox f = image_random_crop(1000, 10, &s, 0.08, 1, 0.75, 4.0 / 3, &att);
    CHECK(att == 0 && f.w == 13 && f.h == 10 && f.x == 493 && f.y == 0, "fallback on 1000x10: attempt %d, %dx%d at (%d, %d), "
          "expected the fallback 13x10 at (493, 0)", att, f.w, f.h, f.x, f.y);
    s = image_rng(1, 0, 0);
    f = image_random_crop(10, 1000, &s, 0.08, 1, 0.75, 4.0 / 3, &att);
    CHECK(att == 0 && f.w == 10 && f.h == 13 && f.x == 0 && f.y == 493, "fallback on 10x1000: %dx%d at (%d, %d)", f.w, f.h, f.x, f.y);

    // the transforms: training is a random crop resized, flipped half the time; evaluation a center crop
    uint8_t *img = pattern(W, H, 6), *out = xmalloc(224 * 224 * 3), *out2 = xmalloc(224 * 224 * 3), *ref = xmalloc(224 * 224 * 3);
    int flips = 0, matches = 0;
    for (int i = 0; i < 100; i++) {
        image_train_transform(img, W, H, 224, 3, 1, (uint64_t)i, out);
        image_train_transform(img, W, H, 224, 3, 1, (uint64_t)i, out2);
        CHECK(!memcmp(out, out2, 224 * 224 * 3), "train transform %d differs between two equal calls", i);
        uint64_t r = image_rng(3, 1, (uint64_t)i);
        ImageBox b = image_random_crop(W, H, &r, 0.08, 1, 0.75, 4.0 / 3, NULL);
        int flip = (int)(splitmix64(&r) >> 63);
        image_resize(img, W, H, b, ref, 224, 224);
        if (flip) image_flip(ref, 224, 224);
        flips += flip;
        matches += !memcmp(out, ref, 224 * 224 * 3);
    }
    CHECK(matches == 100, "train transform: %d of 100 match crop + resize + flip", matches);
    CHECK(flips > 30 && flips < 70, "%d flips in 100 draws", flips);
    // evaluation of 500x375: resized to 341x256, the crop at column round(58.5) = 58 (half to even), row 16
    image_eval_transform(img, W, H, 256, 224, out);
    uint8_t *mid = xmalloc(341 * 256 * 3);
    image_resize(img, W, H, (ImageBox){0, 0, W, H}, mid, 341, 256);
    int ok = 1;
    for (int y = 0; y < 224; y++) ok &= !memcmp(out + (size_t)y * 224 * 3, mid + ((size_t)(16 + y) * 341 + 58) * 3, 224 * 3);
    CHECK(ok, "eval transform is not the 224x224 crop at (58, 16) of the 341x256 resize");
    free(mid);
    // extreme aspect ratios, both ways: still the crop of the whole resize, bit for bit (small sizes, so that
    // the whole resize stays small: 600 x 1 to 19200 x 32, cropped to 24 x 24); and at the recipe's sizes a
    // 20000 x 2 image, whose whole resize would be 2.56 million pixels wide, in far less than that costs
    for (int tall = 0; tall < 2; tall++) {
        int ew = tall ? 1 : 600, eh = tall ? 600 : 1, rw = tall ? 32 : 19200, rh = tall ? 19200 : 32;
        uint8_t *e = pattern(ew, eh, 5), *whole = xmalloc((size_t)rw * rh * 3), got[24 * 24 * 3];
        image_eval_transform(e, ew, eh, 32, 24, got);
        image_resize(e, ew, eh, (ImageBox){0, 0, ew, eh}, whole, rw, rh);
        int top = (int)nearbyint((rh - 24) / 2.0), left = (int)nearbyint((rw - 24) / 2.0), same = 1;
        for (int y = 0; y < 24; y++)
            same &= !memcmp(got + (size_t)y * 24 * 3, whole + ((size_t)(top + y) * rw + left) * 3, 24 * 3);
        CHECK(same, "eval transform of a %dx%d image is not the crop of its %dx%d resize", ew, eh, rw, rh);
        free(e);
        free(whole);
    }
    {
        uint8_t *e = pattern(20000, 2, 6);
        double t0 = now_s();
        image_eval_transform(e, 20000, 2, 256, 224, out);
        double dt = now_s() - t0;
        CHECK(dt < 2.0, "eval transform of a 20000x2 image took %.2f s", dt);
        free(e);
    }
    free(img);
    free(out);
    free(out2);
    free(ref);
}

#ifndef HGRN2_NO_JPEG
// ---- prepare ----

static void put(const char *path, Bytes b) {
    spit(path, b.p, b.n);
    free(b.p);
}

static int same_file(const char *a, const char *b) {
    Bytes x = read_bytes(a), y = read_bytes(b);
    int same = x.n == y.n && !memcmp(x.p, y.p, x.n);
    free(x.p);
    free(y.p);
    return same;
}

// The layout: train/n03 (created first), n01, n02; val/n01, n03. Expected labels, by class then file name.
static void write_layout(const char *root) {
    char p[512];
    const char *dirs[] = {"train/n03", "train/n01", "train/n02", "val/n01", "val/n03", "train/n01/.hidden"};
    for (size_t i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        mkdir_p(p);
    }
    uint8_t *big = pattern(640, 480, 0), *tall = pattern(3, 500, 1), *one = pattern(1, 1, 2), *mid = pattern(300, 200, 3);
    snprintf(p, sizeof p, "%s/train/n01/a.JPEG", root), put(p, encode_rgb(big, 640, 480, 0));
    snprintf(p, sizeof p, "%s/train/n01/b.jpg", root), put(p, encode_gray(mid, 300, 200));
    snprintf(p, sizeof p, "%s/train/n01/c.JPEG", root), put(p, encode_rgb(mid, 300, 200, 1));   // progressive
    snprintf(p, sizeof p, "%s/train/n01/notes.txt", root), spits(p, "not an image\n");   // ignored
    snprintf(p, sizeof p, "%s/train/n02/a.JPEG", root), put(p, encode_cmyk(mid, 300, 200, 255));
    snprintf(p, sizeof p, "%s/train/n02/b.JPEG", root), put(p, encode_rgb(tall, 3, 500, 0));
    // a truncated file and a garbage file: skipped and counted
    Bytes t = encode_rgb(big, 640, 480, 0);
    t.n /= 3;
    snprintf(p, sizeof p, "%s/train/n02/c.JPEG", root), put(p, t);
    snprintf(p, sizeof p, "%s/train/n03/a.JPEG", root), spits(p, "garbage, not a JPEG at all");
    snprintf(p, sizeof p, "%s/train/n03/b.JPEG", root), put(p, encode_rgb(one, 1, 1, 0));
    snprintf(p, sizeof p, "%s/val/n01/v.JPEG", root), put(p, encode_rgb(mid, 300, 200, 0));
    snprintf(p, sizeof p, "%s/val/n03/v.JPEG", root), put(p, encode_rgb(big, 640, 480, 0));
    free(big);
    free(tall);
    free(one);
    free(mid);
}

// The images of a set: labels and sizes as expected, each decodable, each short side at most 256.
static void check_set(const char *what, const char *dir, const char *split, uint32_t classes, int n, const int *labels,
                      const int (*sizes)[2], const char *const *names) {
    JpegSet *s = jpeg_set_open(dir, split);
    CHECK(jpeg_set_count(s) == (uint64_t)n && jpeg_set_classes(s) == classes, "%s: %llu images of %u classes, expected %d of %u",
          what, (unsigned long long)jpeg_set_count(s), jpeg_set_classes(s), n, classes);
    for (uint32_t c = 0; c < classes; c++) {
        const char *got = jpeg_set_class_name(s, c);
        CHECK(names ? got && !strcmp(got, names[c]) : got == NULL, "%s: class %u named '%s', expected '%s'", what, c,
              got ? got : "(none)", names ? names[c] : "(none)");
    }
    uint8_t *buf = NULL, *out = xmalloc(224 * 224 * 3), *out2 = xmalloc(224 * 224 * 3);
    size_t cap = 0, len = 0;
    for (int i = 0; i < n && (uint64_t)i < jpeg_set_count(s); i++) {
        int32_t label = jpeg_set_read(s, (uint64_t)i, &buf, &cap, &len);
        uint8_t *rgb = NULL;
        int w = 0, h = 0;
        char err[256] = "";
        int rc = jpeg_decode_rgb(buf, len, &rgb, &w, &h, NULL, err, sizeof err);
        CHECK(label == labels[i] && rc == 0 && w == sizes[i][0] && h == sizes[i][1] && (w < h ? w : h) <= 256,
              "%s: image %d: label %d (expected %d), decode %d (%s), %dx%d (expected %dx%d)", what, i, label, labels[i], rc,
              err, w, h, sizes[i][0], sizes[i][1]);
        free(rgb);
        // the reader's transforms: the label, and the same crop for the same (seed, epoch, index)
        int32_t l1 = jpeg_set_sample(s, (uint64_t)i, 1, 7, 2, out, err, sizeof err);
        int32_t l2 = jpeg_set_sample(s, (uint64_t)i, 1, 7, 2, out2, err, sizeof err);
        CHECK(l1 == labels[i] && l2 == l1 && !memcmp(out, out2, 224 * 224 * 3), "%s: image %d: train samples %d, %d differ",
              what, i, l1, l2);
        CHECK(jpeg_set_sample(s, (uint64_t)i, 0, 0, 0, out, err, sizeof err) == labels[i], "%s: image %d: eval sample", what, i);
    }
    free(buf);
    free(out);
    free(out2);
    jpeg_set_close(s);
}

static void test_prepare_folders(void) {
    const char *root = TMP "/imagenet";
    write_layout(root);
    const char *a1[] = {"--task", "imagenet", "--input", root, "--out", TMP "/out1", "--threads", "1", NULL};
    int rc = run("prepare", a1);
    CHECK(rc == 0, "prepare --threads 1 failed (%d): %s", rc, err_text.p ? err_text.p : "");
    const char *sum = out_text.p ? out_text.p : "";
    CHECK(strstr(sum, "train 6, val 2 images of 3 classes") && strstr(sum, "2 unreadable images skipped"),
          "summary: %s", sum);
    const char *msg = err_text.p ? err_text.p : "";
    CHECK(strstr(msg, "n02/c.JPEG: truncated") && strstr(msg, "n03/a.JPEG: "), "failures not reported: %s", msg);
    // labels: n01 = 0 (a, b, c), n02 = 1 (a; b; c truncated), n03 = 2 (a garbage; b)
    static const int train_labels[] = {0, 0, 0, 1, 1, 2}, val_labels[] = {0, 2};
    static const char *const names[] = {"n01", "n02", "n03"};
    // 640x480 shrinks to int(256 x 640 / 480) x 256 = 341x256; the others' short sides are at most 256 already
    static const int train_sizes_kept[][2] = {{341, 256}, {300, 200}, {300, 200}, {300, 200}, {3, 500}, {1, 1}};
    static const int val_sizes_kept[][2] = {{300, 200}, {341, 256}};
    check_set("folders train", TMP "/out1", "train", 3, 6, train_labels, train_sizes_kept, names);
    check_set("folders val", TMP "/out1", "val", 3, 2, val_labels, val_sizes_kept, names);
    // the stored 341x256 image is the shrunk original within JPEG error
    {
        JpegSet *s = jpeg_set_open(TMP "/out1", "train");
        uint8_t *buf = NULL, *rgb = NULL;
        size_t cap = 0, len = 0;
        jpeg_set_read(s, 0, &buf, &cap, &len);
        int w, h;
        char err[256];
        if (jpeg_decode_rgb(buf, len, &rgb, &w, &h, NULL, err, sizeof err) == 0 && w == 341 && h == 256) {
            uint8_t *orig = pattern(640, 480, 0), *small = xmalloc(341 * 256 * 3);
            image_resize(orig, 640, 480, (ImageBox){0, 0, 640, 480}, small, 341, 256);
            near("stored 341x256 image against the resized original", mean_abs(rgb, small, 341 * 256 * 3), 3.0);
            free(orig);
            free(small);
        }
        free(rgb);
        free(buf);
        jpeg_set_close(s);
    }
    // the same bytes for any thread count; a smaller short side shrinks more
    const char *a3[] = {"--task", "imagenet", "--input", root, "--out", TMP "/out3", "--threads", "3", NULL};
    CHECK(run("prepare", a3) == 0, "prepare --threads 3 failed: %s", err_text.p ? err_text.p : "");
    CHECK(same_file(TMP "/out1/train.jpegs", TMP "/out3/train.jpegs") && same_file(TMP "/out1/val.jpegs", TMP "/out3/val.jpegs"),
          "prepare wrote different files with 1 and 3 threads");
    const char *a4[] = {"--task", "imagenet", "--input", root, "--out", TMP "/out4", "--short-side", "100", "--quality", "50",
                        "--threads", "2", NULL};
    CHECK(run("prepare", a4) == 0, "prepare --short-side 100 failed: %s", err_text.p ? err_text.p : "");
    static const int small_sizes[][2] = {{133, 100}, {150, 100}, {150, 100}, {150, 100}, {3, 500}, {1, 1}};
    check_set("short side 100", TMP "/out4", "train", 3, 6, train_labels, small_sizes, names);
    // a second run into the same folder is refused
    expect_msg_of("existing output", 1, "prepare", a1, "already holds", NULL);
}

static void test_prepare_lists(void) {
    const char *root = TMP "/imagenet";   // written by test_prepare_folders
    char abs_path[PATH_MAX];
    CHECK(realpath(root, abs_path) != NULL, "realpath failed");
    mkdir_p(TMP "/lists");
    char *line = xasprintf("../imagenet/train/n01/a.JPEG 4\n\n  ../imagenet/train/n02/b.JPEG\t0  \r\n%s/train/n03/b.JPEG 2\n"
                           "../imagenet/train/n02/c.JPEG 1\n", abs_path);
    spits(TMP "/lists/train.txt", line);
    free(line);
    spits(TMP "/lists/val.txt", "../imagenet/val/n01/v.JPEG 3\n");
    const char *a[] = {"--task", "imagenet", "--train-list", TMP "/lists/train.txt", "--val-list", TMP "/lists/val.txt",
                       "--classes", "5", "--out", TMP "/outl", "--threads", "2", NULL};
    int rc = run("prepare", a);
    CHECK(rc == 0, "prepare from lists failed (%d): %s", rc, err_text.p ? err_text.p : "");
    CHECK(out_text.p && strstr(out_text.p, "train 3, val 1 images of 5 classes") && strstr(out_text.p, "1 unreadable image skipped"),
          "lists summary: %s", out_text.p ? out_text.p : "");
    static const int labels[] = {4, 0, 2}, vlabels[] = {3};
    static const int sizes[][2] = {{341, 256}, {3, 500}, {1, 1}}, vsizes[][2] = {{300, 200}};
    check_set("lists train", TMP "/outl", "train", 5, 3, labels, sizes, NULL);
    check_set("lists val", TMP "/outl", "val", 5, 1, vlabels, vsizes, NULL);
}

static void test_prepare_errors(void) {
    char p[512];
    // no train/
    mkdir_p(TMP "/e1/val/n01");
    const char *a1[] = {"--task", "imagenet", "--input", TMP "/e1", "--out", TMP "/eo1", NULL};
    expect_msg_of("missing train/", 1, "prepare", a1, "e1/train is not a folder", NULL);
    // a val class that train lacks
    mkdir_p(TMP "/e2/train/n01");
    mkdir_p(TMP "/e2/val/n01");
    mkdir_p(TMP "/e2/val/n77");
    uint8_t *img = pattern(20, 20, 0);
    snprintf(p, sizeof p, TMP "/e2/train/n01/a.JPEG"), put(p, encode_rgb(img, 20, 20, 0));
    snprintf(p, sizeof p, TMP "/e2/val/n01/a.JPEG"), put(p, encode_rgb(img, 20, 20, 0));
    snprintf(p, sizeof p, TMP "/e2/val/n77/a.JPEG"), put(p, encode_rgb(img, 20, 20, 0));
    const char *a2[] = {"--task", "imagenet", "--input", TMP "/e2", "--out", TMP "/eo2", NULL};
    expect_msg_of("val class not in train", 1, "prepare", a2, "1 class folder that", "n77");
    // an empty class folder
    rmrf(TMP "/e2/val/n77");
    mkdir_p(TMP "/e2/train/n02");
    expect_msg_of("empty class folder", 1, "prepare", a2, "n02: a class folder without JPEG files", NULL);
    // every image unreadable
    rmrf(TMP "/e2/train/n02");
    snprintf(p, sizeof p, TMP "/e2/train/n01/a.JPEG"), spits(p, "junk");
    expect_msg_of("no readable training image", 1, "prepare", a2, "no training images", NULL);
    // lists: a line without a label, a label out of range
    spits(TMP "/lists/nolabel.txt", "../imagenet/train/n01/a.JPEG 1\n../imagenet/train/n01/b.jpg\n");
    const char *a3[] = {"--task", "imagenet", "--train-list", TMP "/lists/nolabel.txt", "--val-list", TMP "/lists/val.txt",
                        "--classes", "5", "--out", TMP "/eo3", NULL};
    expect_msg_of("list line without a label", 1, "prepare", a3, "nolabel.txt:2: no label", NULL);
    spits(TMP "/lists/range.txt", "../imagenet/train/n01/a.JPEG 5\n");
    const char *a4[] = {"--task", "imagenet", "--train-list", TMP "/lists/range.txt", "--val-list", TMP "/lists/val.txt",
                        "--classes", "5", "--out", TMP "/eo4", NULL};
    expect_msg_of("label out of range", 1, "prepare", a4, "range.txt:1: label '5' is not an integer in [0, 5)", NULL);
    spits(TMP "/lists/neg.txt", "x.JPEG -1\n");
    a4[3] = TMP "/lists/neg.txt";
    expect_msg_of("negative label", 1, "prepare", a4, "label '-1'", NULL);
    // usage errors
    const char *u1[] = {"--task", "imagenet", "--input", TMP "/e2", "--train-list", TMP "/lists/val.txt", "--out", TMP "/eo5", NULL};
    expect_msg_of("--input with --train-list", 2, "prepare", u1, "not both", NULL);
    const char *u2[] = {"--task", "imagenet", "--input", TMP "/e2", "--tokenizer", "byte", "--out", TMP "/eo5", NULL};
    expect_msg_of("--tokenizer with imagenet", 2, "prepare", u2, "--tokenizer does not apply", NULL);
    const char *u3[] = {"--task", "lra-image", "--input", TMP "/e2", "--quality", "80", "--out", TMP "/eo5", NULL};
    expect_msg_of("--quality with lra-image", 2, "prepare", u3, "--quality applies to --task imagenet only", NULL);
    const char *outs[] = {TMP "/eo1", TMP "/eo2", TMP "/eo3", TMP "/eo4", TMP "/eo5"};
    for (int i = 0; i < 5; i++) CHECK(!dir_has(outs[i], "jpegs"), "a failed prepare left files in %s", outs[i]);
    free(img);
}

// A damaged file is refused by the reader with a message, never read as data.
static const char *g_path;
static void open_and_read_all(const void *arg) {
    JpegSet *s = jpeg_set_open_file(g_path);
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    for (uint64_t i = 0; i < jpeg_set_count(s); i++) jpeg_set_read(s, i, &buf, &cap, &len);
    exit(0);
}

static void test_reader_damage(void) {
    Bytes good = read_bytes(TMP "/out1/train.jpegs");
    const ChildSpec spec = {.cap_mib = 1024, .alarm_s = 30, .err_path = TMP "/child_err"};
    g_path = TMP "/damaged.jpegs";
    struct { size_t at; const char *what, *frag; } cases[] = {
        {0, "magic", "bad magic"},
        {12, "class count", "checksum"},
        {40, "reserved byte", "reserved byte"},
        {good.n - 5, "index", "checksum"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        good.p[cases[k].at] ^= 0x40;
        spit(g_path, good.p, good.n);
        good.p[cases[k].at] ^= 0x40;
        expect_death(&spec, cases[k].what, open_and_read_all, NULL, cases[k].frag, NULL);
    }
    // a byte of an image: the index's hash catches it
    size_t names = le_get_u32(good.p + 16);
    good.p[64 + names + 100] ^= 1;
    spit(g_path, good.p, good.n);
    expect_death(&spec, "image bytes", open_and_read_all, NULL, "do not match the index's hash", NULL);
    spit(g_path, good.p, good.n - 7);
    expect_death(&spec, "truncated file", open_and_read_all, NULL, "truncated", NULL);
    free(good.p);
}
#endif

#ifndef HGRN2_NO_JPEG
// test_jpeg --make-images DIR CLASSES TRAIN VAL [W H]: the folder layout of prepare --task imagenet with CLASSES
// classes of TRAIN and VAL JPEG images each (for tests/test_imagenet.sh, and at ImageNet's typical 500 x 375
// for scripts/gpu_imagenet.sh): images of varied sizes from W x H up (default 40 x 36), each class its own hue
// over a noise pattern, so that a model can tell them apart.
static int make_images(const char *dir, int classes, int ntrain, int nval, int w0, int h0) {
    if (classes < 1 || ntrain < 1 || nval < 0 || w0 < 8 || h0 < 8 || w0 > 4096 || h0 > 4096)
        die("--make-images: bad sizes");
    for (int split = 0; split < 2; split++)
        for (int c = 0; c < classes; c++) {
            char *folder = xasprintf("%s/%s/c%02d", dir, split ? "val" : "train", c);
            mkdir_p(folder);
            for (int i = 0; i < (split ? nval : ntrain); i++) {
                const int w = w0 + 7 * ((i + c) % 5), h = h0 + 5 * ((i * 3 + c) % 4);
                uint8_t *img = xmalloc((size_t)w * h * 3);
                uint64_t r = mix64((uint64_t)(split * 1000003 + c * 1009 + i));
                for (int p = 0; p < w * h; p++)
                    for (int ch = 0; ch < 3; ch++) {
                        const int base = ch == c % 3 ? 200 : 50;
                        img[p * 3 + ch] = (uint8_t)(base + (int)(splitmix64(&r) % 50));
                    }
                uint8_t *enc;
                size_t n;
                char err[200];
                if (jpeg_encode_rgb(img, w, h, 90, &enc, &n, err, sizeof err)) die("encode: %s", err);
                char *path = xasprintf("%s/i%03d.jpg", folder, i);
                FILE *f = fopen(path, "wb");
                if (!f || fwrite(enc, 1, n, f) != n || fclose(f)) die("cannot write %s", path);
                free(path); free(enc); free(img);
            }
            free(folder);
        }
    return 0;
}
#endif

int main(int argc, char **argv) {
#ifndef HGRN2_NO_JPEG
    if ((argc == 6 || argc == 8) && !strcmp(argv[1], "--make-images"))
        return make_images(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), argc == 8 ? atoi(argv[6]) : 40,
                           argc == 8 ? atoi(argv[7]) : 36);
#endif
    (void)argc; (void)argv;
    if (system("rm -rf " TMP) != 0) die("test: cannot clear " TMP);
    mkdir_p(TMP);
    double t0 = now_s();
    test_resize();
    test_crops();
#ifndef HGRN2_NO_JPEG
    CHECK(jpeg_available(), "built with libjpeg-turbo, yet jpeg_available() is 0");
    test_decode();
    test_refusals();
    test_prepare_folders();
    test_prepare_lists();
    test_prepare_errors();
    test_reader_damage();
#else
    // a build without libjpeg-turbo refuses the task with a clear message
    mkdir_p(TMP "/in/train/n01");
    const char *a[] = {"--task", "imagenet", "--input", TMP "/in", "--out", TMP "/out", NULL};
    expect_msg_of("imagenet without libjpeg", 1, "prepare", a, "libjpeg62-turbo-dev", NULL);
#endif
    printf("test_jpeg: %.1f s\n", now_s() - t0);
    return check_summary("test_jpeg");
}
