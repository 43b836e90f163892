// jpeg.c: JPEG decoding and encoding in memory on libjpeg-turbo, with libjpeg's errors turned into return
// codes; antialiased bicubic resizing, crops and the recipe's random resized crop. Interface and choices:
// jpeg.h, docs/imagenet.md.
#define _GNU_SOURCE
#include <limits.h>
#include <math.h>
#include <setjmp.h>

#include "jpeg.h"

#ifndef HGRN2_NO_JPEG
#include <stdio.h>
#include <jpeglib.h>
#include <jerror.h>

int jpeg_available(void) { return 1; }

// libjpeg reports errors through error_exit, which must not return: it jumps back to the call that set the
// jump buffer. A premature end of data is only a warning to libjpeg (it pads the image with gray); here it
// is an error, so that a truncated file is not taken for an image.
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int warnings;
    char msg[JMSG_LENGTH_MAX];
} ErrMgr;

static void on_error(j_common_ptr c) {
    ErrMgr *e = (ErrMgr *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void on_message(j_common_ptr c, int level) {
    if (level >= 0) return;   // trace messages
    ErrMgr *e = (ErrMgr *)c->err;
    if (c->err->msg_code == JWRN_JPEG_EOF) {
        snprintf(e->msg, sizeof e->msg, "truncated: the data ends before the image does");
        longjmp(e->jb, 1);
    }
    e->warnings++;
}

// libjpeg's standard error manager with its errors and messages turned into ours (on_error, on_message)
static struct jpeg_error_mgr *err_mgr_init(ErrMgr *e) {
    struct jpeg_error_mgr *m = jpeg_std_error(&e->pub);
    e->pub.error_exit = on_error;
    e->pub.emit_message = on_message;
    e->warnings = 0;
    e->msg[0] = 0;
    return m;
}

// Called as libjpeg reads the input: refuses a file of too many scans before it costs minutes.
static void on_progress(j_common_ptr c) {
    if (!c->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > JPEG_SCANS_MAX) {
        ErrMgr *e = (ErrMgr *)c->err;
        snprintf(e->msg, sizeof e->msg, "more than %d scans", JPEG_SCANS_MAX);
        longjmp(e->jb, 1);
    }
}

int jpeg_decode_rgb(const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h, int *warnings, char *err, size_t errlen) {
    struct jpeg_decompress_struct d;
    ErrMgr e;
    struct jpeg_progress_mgr prog = {.progress_monitor = on_progress};
    // Set after setjmp and read after a jump: volatile, so the jump does not restore a stale copy.
    uint8_t *volatile out = NULL, *volatile row = NULL;
    *rgb = NULL;
    if (n == 0) {
        snprintf(err, errlen, "empty file");
        return -1;
    }
    if (n > (size_t)ULONG_MAX) {
        snprintf(err, errlen, "too large");
        return -1;
    }
    d.err = err_mgr_init(&e);
    if (setjmp(e.jb)) {
        snprintf(err, errlen, "%s", e.msg[0] ? e.msg : "corrupt JPEG");
        jpeg_destroy_decompress(&d);
        free(out);
        free(row);
        return -1;
    }
    jpeg_create_decompress(&d);
    d.progress = &prog;
    jpeg_mem_src(&d, data, (unsigned long)n);
    jpeg_read_header(&d, TRUE);
    if (d.image_width < 1 || d.image_height < 1 || d.image_width > JPEG_SIDE_MAX || d.image_height > JPEG_SIDE_MAX ||
        (uint64_t)d.image_width * d.image_height > JPEG_PIXELS_MAX) {
        snprintf(err, errlen, "%ux%u pixels: larger than this reads (%d a side, %u pixels)", d.image_width, d.image_height,
                 JPEG_SIDE_MAX, JPEG_PIXELS_MAX);
        jpeg_destroy_decompress(&d);
        return -1;
    }
    // A complete Huffman-coded JPEG spends at least one bit on every 8 x 8 block of its first component (a
    // DC code; baseline adds an end-of-block code), so n bytes hold at most 512 n pixels. A file declaring
    // more is truncated or corrupt, and would otherwise cost the declared image's memory and decoding time
    // (a 1.6 GB coefficient buffer for a progressive 2^28-pixel header) before the data ran out. Arithmetic
    // coding can spend less than a bit a block: such files get only the limits above.
    if (!d.arith_code && (uint64_t)d.image_width * d.image_height > (uint64_t)n * JPEG_PIXELS_PER_BYTE) {
        snprintf(err, errlen, "%ux%u pixels in a file of %zu bytes: more than a complete JPEG of that size holds (%d pixels a "
                 "byte); the file is truncated or corrupt", d.image_width, d.image_height, n, JPEG_PIXELS_PER_BYTE);
        jpeg_destroy_decompress(&d);
        return -1;
    }
    int cmyk = d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK;
    d.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&d);
    int W = (int)d.output_width, H = (int)d.output_height;
    if (d.output_components != (cmyk ? 4 : 3)) {
        snprintf(err, errlen, "libjpeg gave %d components, expected %d", d.output_components, cmyk ? 4 : 3);
        jpeg_destroy_decompress(&d);
        return -1;
    }
    out = xmalloc((size_t)W * H * 3);
    if (cmyk) row = xmalloc((size_t)W * 4);
    // Adobe's files (what libjpeg writes too) store CMYK inverted: 255 is no ink. Then R = C x K / 255; a
    // file without the Adobe marker stores plain CMYK.
    int inverted = d.saw_Adobe_marker;
    while (d.output_scanline < d.output_height) {
        uint8_t *dst = out + (size_t)d.output_scanline * W * 3;
        JSAMPROW rows[1] = {cmyk ? row : dst};
        if (jpeg_read_scanlines(&d, rows, 1) != 1) {
            snprintf(e.msg, sizeof e.msg, "no scanline decoded");
            longjmp(e.jb, 1);
        }
        if (cmyk)
            for (int x = 0; x < W; x++) {
                const uint8_t *p = row + 4 * x;
                int k = inverted ? p[3] : 255 - p[3];
                for (int c = 0; c < 3; c++) {
                    int v = inverted ? p[c] : 255 - p[c];
                    dst[3 * x + c] = (uint8_t)((v * k + 127) / 255);
                }
            }
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    free(row);
    *rgb = out;
    *w = W;
    *h = H;
    if (warnings) *warnings = e.warnings;
    return 0;
}

int jpeg_encode_rgb(const uint8_t *rgb, int w, int h, int quality, uint8_t **outp, size_t *n, char *err, size_t errlen) {
    struct jpeg_compress_struct c;
    ErrMgr e;
    unsigned char *volatile buf = NULL;
    unsigned long size = 0;
    *outp = NULL;
    if (w < 1 || h < 1 || w > 65500 || h > 65500 || quality < 1 || quality > 100) {
        snprintf(err, errlen, "cannot encode %dx%d pixels at quality %d", w, h, quality);
        return -1;
    }
    c.err = err_mgr_init(&e);
    if (setjmp(e.jb)) {
        snprintf(err, errlen, "JPEG encoding failed: %s", e.msg);
        jpeg_destroy_compress(&c);
        free(buf);
        return -1;
    }
    jpeg_create_compress(&c);
    unsigned char *b = NULL;
    jpeg_mem_dest(&c, &b, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    c.optimize_coding = TRUE;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW rows[1] = {(JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3)};
        jpeg_write_scanlines(&c, rows, 1);
    }
    jpeg_finish_compress(&c);
    buf = b;
    jpeg_destroy_compress(&c);
    *outp = buf;
    *n = size;
    return 0;
}

#else   // built without libjpeg-turbo

int jpeg_available(void) { return 0; }
static const char NO_JPEG[] = "this build has no JPEG support: install libjpeg62-turbo-dev (make setup) and rebuild";
int jpeg_decode_rgb(const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h, int *warnings, char *err, size_t errlen) {
    *rgb = NULL;
    snprintf(err, errlen, "%s", NO_JPEG);
    return -1;
}
int jpeg_encode_rgb(const uint8_t *rgb, int w, int h, int quality, uint8_t **out, size_t *n, char *err, size_t errlen) {
    *out = NULL;
    snprintf(err, errlen, "%s", NO_JPEG);
    return -1;
}
#endif

// ----------------------------------------------------------------------------------------------------------
// Resampling

double image_bicubic(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

// The taps of one axis: output i of `out` reads source pixels first[i] .. first[i] + count[i] - 1 of a
// segment of `in` pixels, with weights w[i * taps ..]. The kernel is stretched by the shrink factor when
// shrinking; taps outside the segment are dropped and the rest renormalised (PIL's convention).
typedef struct { int taps; int *first, *count; float *w; } Taps;

// The taps of outputs from .. from + n - 1 (i below) of a resampling of `in` pixels to `out`.
static Taps taps_make(int in, int out, int from, int n) {
    double scale = (double)in / out, fs = scale > 1 ? scale : 1, support = 2 * fs;
    Taps t;
    t.taps = (int)ceil(support) * 2 + 1;
    t.first = xmalloc((size_t)n * sizeof *t.first);
    t.count = xmalloc((size_t)n * sizeof *t.count);
    t.w = xcalloc((size_t)n * t.taps, sizeof *t.w);
    double *k = xmalloc((size_t)t.taps * sizeof *k);
    for (int i = 0; i < n; i++) {
        double center = (from + i + 0.5) * scale;
        int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        if (hi - lo > t.taps) hi = lo + t.taps;
        double sum = 0;
        for (int x = lo; x < hi; x++) sum += k[x - lo] = image_bicubic((x + 0.5 - center) / fs);
        t.first[i] = lo;
        t.count[i] = hi - lo;
        for (int x = lo; x < hi; x++) t.w[(size_t)i * t.taps + (x - lo)] = (float)(sum != 0 ? k[x - lo] / sum : 0);
    }
    free(k);
    return t;
}

static void taps_free(Taps *t) {
    free(t->first);
    free(t->count);
    free(t->w);
}

static uint8_t clamp8(float v) {
    if (!(v > 0)) return 0;
    if (v >= 255) return 255;
    return (uint8_t)lrintf(v);
}

// The window win (in the dw x dh result) of the box's resampling, into dst[win.h][win.w][3]: only the taps,
// the source rows and the intermediate values that the window needs, so that a window of a huge result (the
// center crop of an image of extreme aspect ratio resized to a short side of 256) costs what the window does.
// Each value is computed as for the whole result, in the same order: the same bits.
static void resize_window(const uint8_t *src, int sw, ImageBox b, int dw, int dh, ImageBox win, uint8_t *dst) {
    Taps tx = taps_make(b.w, dw, win.x, win.w), ty = taps_make(b.h, dh, win.y, win.h);
    // the source rows the window reads: from the first row of its first output to the last of its last
    int r0 = ty.first[0], r1 = r0;
    for (int j = 0; j < win.h; j++)
        if (ty.first[j] + ty.count[j] > r1) r1 = ty.first[j] + ty.count[j];
    // The horizontal pass over those rows of the box, kept in float, then the vertical pass.
    float *mid = xmalloc((size_t)win.w * (r1 - r0 > 0 ? r1 - r0 : 1) * 3 * sizeof *mid);
    for (int y = r0; y < r1; y++) {
        const uint8_t *row = src + ((size_t)(b.y + y) * sw + b.x) * 3;
        float *m = mid + (size_t)(y - r0) * win.w * 3;
        for (int i = 0; i < win.w; i++) {
            const float *w = tx.w + (size_t)i * tx.taps;
            const uint8_t *p = row + (size_t)tx.first[i] * 3;
            float r = 0, g = 0, bl = 0;
            for (int k = 0; k < tx.count[i]; k++, p += 3) {
                r += w[k] * p[0];
                g += w[k] * p[1];
                bl += w[k] * p[2];
            }
            m[3 * i] = r;
            m[3 * i + 1] = g;
            m[3 * i + 2] = bl;
        }
    }
    float *acc = xmalloc((size_t)win.w * 3 * sizeof *acc);
    for (int j = 0; j < win.h; j++) {
        const float *w = ty.w + (size_t)j * ty.taps;
        for (int q = 0; q < win.w * 3; q++) acc[q] = 0;
        for (int k = 0; k < ty.count[j]; k++) {
            const float *m = mid + (size_t)(ty.first[j] + k - r0) * win.w * 3;
            for (int q = 0; q < win.w * 3; q++) acc[q] += w[k] * m[q];
        }
        uint8_t *o = dst + (size_t)j * win.w * 3;
        for (int q = 0; q < win.w * 3; q++) o[q] = clamp8(acc[q]);
    }
    free(acc);
    free(mid);
    taps_free(&tx);
    taps_free(&ty);
}

void image_resize(const uint8_t *src, int sw, int sh, ImageBox b, uint8_t *dst, int dw, int dh) {
    if (sw < 1 || sh < 1 || dw < 1 || dh < 1 || b.w < 1 || b.h < 1 || b.x < 0 || b.y < 0 || b.x > sw - b.w ||
        b.y > sh - b.h)
        die("image_resize: box %dx%d at (%d, %d) of a %dx%d image to %dx%d", b.w, b.h, b.x, b.y, sw, sh, dw, dh);
    resize_window(src, sw, b, dw, dh, (ImageBox){0, 0, dw, dh}, dst);
}

void image_short_side(int w, int h, int side, int *ow, int *oh) {
    if (w <= h) {
        *ow = side;
        long long l = (long long)side * h / w;
        *oh = l < 1 ? 1 : (int)l;
    } else {
        *oh = side;
        long long l = (long long)side * w / h;
        *ow = l < 1 ? 1 : (int)l;
    }
}

void image_flip(uint8_t *rgb, int w, int h) {
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * w * 3;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[3 * a + c];
                row[3 * a + c] = row[3 * b + c];
                row[3 * b + c] = t;
            }
    }
}

// ----------------------------------------------------------------------------------------------------------
// The random crop

uint64_t image_rng(uint64_t seed, uint64_t epoch, uint64_t index) {
    return mix64(mix64(mix64(seed ^ 0x696D6167656E6574ull) ^ epoch) ^ index);
}

// Uniform in [0, n) (n >= 1), as the high part of a 64 x 64-bit product.
static int rng_below(uint64_t *s, int n) { return (int)(((unsigned __int128)splitmix64(s) * (uint64_t)n) >> 64); }

ImageBox image_random_crop(int w, int h, uint64_t *rng, double smin, double smax, double rmin, double rmax, int *attempts) {
    double area = (double)w * h, lr0 = log(rmin), lr1 = log(rmax);
    for (int a = 1; a <= 10; a++) {
        double target = area * (smin + (smax - smin) * rng_uniform(rng));
        double ratio = exp(lr0 + (lr1 - lr0) * rng_uniform(rng));
        double cw = nearbyint(sqrt(target * ratio)), ch = nearbyint(sqrt(target / ratio));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            ImageBox b = {0, 0, (int)cw, (int)ch};
            b.y = rng_below(rng, h - b.h + 1);
            b.x = rng_below(rng, w - b.w + 1);
            if (attempts) *attempts = a;
            return b;
        }
    }
    // The fallback: the whole image, cut to the nearest ratio in range, centered. (Python's round, which
    // torchvision uses, rounds half to even: nearbyint in the default rounding mode.)
    double in_ratio = (double)w / h;
    ImageBox b = {0, 0, w, h};
    if (in_ratio < rmin) b.h = (int)nearbyint(w / rmin);
    else if (in_ratio > rmax) b.w = (int)nearbyint(h * rmax);
    if (b.w < 1) b.w = 1;
    if (b.h < 1) b.h = 1;
    if (b.w > w) b.w = w;
    if (b.h > h) b.h = h;
    b.x = (w - b.w) / 2;
    b.y = (h - b.h) / 2;
    if (attempts) *attempts = 0;
    return b;
}

void image_eval_transform(const uint8_t *rgb, int w, int h, int resize, int side, uint8_t *out) {
    if (resize < side) die("image_eval_transform: resize %d is below the crop %d", resize, side);
    if (w < 1 || h < 1) die("image_eval_transform: a %dx%d image", w, h);
    int rw, rh;
    image_short_side(w, h, resize, &rw, &rh);
    // torchvision's center crop: offsets round((size - crop) / 2), Python's round (half to even) as rint. Only
    // the crop's window of the resized image is computed: the same pixels as resizing it all and cutting them
    // out, without the whole (an image of 32768 x 1 pixels would be 8.4 million pixels wide at 256 high).
    int top = (int)nearbyint((rh - side) / 2.0), left = (int)nearbyint((rw - side) / 2.0);
    resize_window(rgb, w, (ImageBox){0, 0, w, h}, rw, rh, (ImageBox){left, top, side, side}, out);
}

void image_train_transform(const uint8_t *rgb, int w, int h, int side, uint64_t seed, uint64_t epoch, uint64_t index,
                           uint8_t *out) {
    uint64_t s = image_rng(seed, epoch, index);
    ImageBox b = image_random_crop(w, h, &s, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0, NULL);
    image_resize(rgb, w, h, b, out, side, side);
    if (splitmix64(&s) >> 63) image_flip(out, side, side);
}
