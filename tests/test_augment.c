// tests/test_augment.c: the ImageNet recipe's host-side augmentations (augment.h). Each op against a direct
// reference on small pictures: Invert, Posterize, Solarize and SolarizeAdd value by value; AutoContrast and
// Equalize on hand-made histograms with hand-computed maps; the enhancements at their end points; Rotate by 0
// (identity) and by quarter turns (exact rotations); Translate by whole pixels (exact, with the fill);
// magnitude-to-parameter mappings; RandAugment's determinism per key and its difference across epochs;
// random erasing's box statistics and probability; repeated augmentation in the index functions and in the
// loader itself (each drawn example 3 times in a row, an epoch of the dataset's size, the copies different);
// the Gamma and Beta samplers of mixup and cutmix against their moments.
#define _GNU_SOURCE
#include <math.h>
#include <sys/stat.h>

#include "../augment.h"
#include "../imagenet.h"
#include "../imloader.h"
#include "../jpeg.h"
#include "check.h"

#define TMP "tests/tmp/test_augment"

static uint8_t *random_image(int w, int h, uint64_t seed) {
    uint8_t *p = xmalloc((size_t)w * h * 3);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) p[i] = (uint8_t)(splitmix64(&seed) >> 56);
    return p;
}
static uint8_t *dup_image(const uint8_t *p, int w, int h) {
    uint8_t *q = xmalloc((size_t)w * h * 3);
    memcpy(q, p, (size_t)w * h * 3);
    return q;
}
static const uint8_t *px(const uint8_t *img, int w, int x, int y) { return img + ((size_t)y * w + x) * 3; }
static int same(const uint8_t *a, const uint8_t *b, int w, int h) { return !memcmp(a, b, (size_t)w * h * 3); }

static void test_point_ops(void) {
    const int w = 9, h = 7;
    const size_t n = (size_t)w * h * 3;
    uint8_t *src = random_image(w, h, 1), *img = dup_image(src, w, h);
    aug_invert(img, w, h);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += img[i] != 255 - src[i];
    CHECK(!bad, "invert: %d values wrong", bad);
    for (int bits = 0; bits <= 8; bits++) {
        memcpy(img, src, n);
        aug_posterize(img, w, h, bits);
        bad = 0;
        for (size_t i = 0; i < n; i++) bad += img[i] != (bits ? (src[i] >> (8 - bits)) << (8 - bits) : 0);
        CHECK(!bad, "posterize %d bits: %d values wrong", bits, bad);
    }
    for (int t = 0; t <= 256; t += 32) {
        memcpy(img, src, n);
        aug_solarize(img, w, h, t);
        bad = 0;
        for (size_t i = 0; i < n; i++) bad += img[i] != (src[i] >= t ? 255 - src[i] : src[i]);
        CHECK(!bad, "solarize at %d: %d values wrong", t, bad);
    }
    memcpy(img, src, n);
    aug_solarize_add(img, w, h, 99, 128);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += img[i] != (src[i] < 128 ? (src[i] + 99 > 255 ? 255 : src[i] + 99) : src[i]);
    CHECK(!bad, "solarize-add 99 below 128: %d values wrong", bad);
    // enhancements at their end points
    memcpy(img, src, n);
    aug_brightness(img, w, h, 0);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += img[i] != 0;
    CHECK(!bad, "brightness 0 is black");
    memcpy(img, src, n);
    aug_brightness(img, w, h, 0.5);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += img[i] != src[i] / 2;
    CHECK(!bad, "brightness 0.5 halves (truncating): %d wrong", bad);
    for (int k = 0; k < 4; k++) {
        memcpy(img, src, n);
        if (k == 0) aug_brightness(img, w, h, 1.0);
        if (k == 1) aug_color(img, w, h, 1.0);
        if (k == 2) aug_contrast(img, w, h, 1.0);
        if (k == 3) aug_sharpness(img, w, h, 1.0);
        CHECK(same(img, src, w, h), "enhancement %d at factor 1 is the identity", k);
    }
    memcpy(img, src, n);
    aug_color(img, w, h, 0);
    bad = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        const uint8_t *s = src + 3 * i;
        const int g = (int)floor(0.299 * s[0] + 0.587 * s[1] + 0.114 * s[2] + 0.5);
        for (int c = 0; c < 3; c++) bad += abs(img[3 * i + c] - g) > 1;
    }
    CHECK(!bad, "color 0: the gray of each pixel on all channels (%d off)", bad);
    memcpy(img, src, n);
    aug_contrast(img, w, h, 0);
    bad = 0;
    for (size_t i = 1; i < n; i++) bad += img[i] != img[0];
    CHECK(!bad, "contrast 0: one gray");
    // sharpness of a flat picture changes nothing at any factor; of a single bright dot, the dot's
    // neighbours move away from the smoothed value
    uint8_t *flat = xmalloc(n);
    memset(flat, 77, n);
    aug_sharpness(flat, w, h, 2.0);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += flat[i] != 77;
    CHECK(!bad, "sharpness of a flat picture");
    memset(flat, 100, n);
    flat[(3 * w + 4) * 3] = 230;
    aug_sharpness(flat, w, h, 0);       // the smoothed picture itself: center (100 x 8 + 230 x 5) / 13 = 150
    CHECK(flat[(3 * w + 4) * 3] == 150 && flat[(3 * w + 5) * 3] == 110 && flat[(3 * w + 4) * 3 + 1] == 100,
          "sharpness 0 = the 1-5-1 smoothing / 13: %d %d %d", flat[(3 * w + 4) * 3], flat[(3 * w + 5) * 3],
          flat[(3 * w + 4) * 3 + 1]);
    free(flat);
    free(src);
    free(img);
}

static void test_histogram_ops(void) {
    // AutoContrast: red of 50, 100, 150 stretched by 2.55 (truncated: 0, 127, 255); green one value (kept);
    // blue already 0-255 (kept)
    const int w = 3, h = 1;
    uint8_t img[] = {50, 7, 0, 100, 7, 255, 150, 7, 128};
    aug_autocontrast(img, w, h);
    const uint8_t want[] = {0, 7, 0, 127, 7, 255, 255, 7, 128};
    CHECK(!memcmp(img, want, sizeof want), "autocontrast: %d %d %d / %d %d %d / %d %d %d", img[0], img[1], img[2], img[3],
          img[4], img[5], img[6], img[7], img[8]);
    // Equalize on 32 x 32: red 0 x 256, 100 x 256, 200 x 512. step = (1024 - 512) / 255 = 2; the map of v is
    // (1 + the count below v) / 2: 0 -> 0, 100 -> 257 / 2 = 128, 200 -> 513 / 2 = 256, clipped to 255.
    // Green: one value (kept). Blue: 5 x 1023 and 9 x 1: step (1024 - 1) / 255 = 4: 5 -> 2 / 4 = 0, 9 ->
    // (2 + 1023) / 4 = 256 -> 255.
    const int W = 32, H = 32;
    uint8_t *e = xmalloc(W * H * 3);
    for (int i = 0; i < W * H; i++) {
        e[3 * i] = i < 256 ? 0 : i < 512 ? 100 : 200;
        e[3 * i + 1] = 42;
        e[3 * i + 2] = i == 0 ? 9 : 5;
    }
    aug_equalize(e, W, H);
    CHECK(e[0] == 0 && e[3 * 300] == 128 && e[3 * 600] == 255, "equalize red: %d %d %d", e[0], e[3 * 300], e[3 * 600]);
    CHECK(e[1] == 42 && e[3 * 700 + 1] == 42, "equalize of one value keeps it");
    CHECK(e[2] == 255 && e[3 * 5 + 2] == 0, "equalize blue: %d %d", e[2], e[3 * 5 + 2]);
    // too few values for a step (16 pixels, 8 of the highest): kept
    uint8_t s[16 * 3];
    for (int i = 0; i < 16; i++) s[3 * i] = s[3 * i + 1] = s[3 * i + 2] = i < 4 ? 10 : i < 8 ? 20 : 30;
    uint8_t s0[16 * 3];
    memcpy(s0, s, sizeof s);
    aug_equalize(s, 4, 4);
    CHECK(!memcmp(s, s0, sizeof s), "equalize without a step keeps the picture");
    free(e);
}

static void test_affine(void) {
    static const uint8_t fill[3] = {AUG_FILL_R, AUG_FILL_G, AUG_FILL_B};
    for (int n = 7; n <= 8; n++) {
        uint8_t *src = random_image(n, n, 3), *img = dup_image(src, n, n);
        aug_rotate(img, n, n, 0);
        CHECK(same(img, src, n, n), "rotate 0 is the identity (%d x %d)", n, n);
        // counter-clockwise quarter turns: +90 takes the top-right corner to the top-left
        for (int q = -1; q <= 2; q++) {
            memcpy(img, src, (size_t)n * n * 3);
            aug_rotate(img, n, n, 90.0 * q);
            int bad = 0;
            for (int y = 0; y < n; y++)
                for (int x = 0; x < n; x++) {
                    int sx, sy;
                    if (q == 1) { sx = n - 1 - y; sy = x; }
                    else if (q == -1) { sx = y; sy = n - 1 - x; }
                    else if (q == 2) { sx = n - 1 - x; sy = n - 1 - y; }
                    else { sx = x; sy = y; }
                    bad += memcmp(px(img, n, x, y), px(src, n, sx, sy), 3) != 0;
                }
            CHECK(!bad, "rotate %d on %d x %d: %d pixels wrong", 90 * q, n, n, bad);
        }
        // a rotation by a hair's breadth off 90 stays within a level of the exact one
        memcpy(img, src, (size_t)n * n * 3);
        aug_rotate(img, n, n, 90.0 + 1e-9);
        int far = 0;
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++)
                for (int c = 0; c < 3; c++) far += abs(px(img, n, x, y)[c] - px(src, n, n - 1 - y, x)[c]) > 1;
        CHECK(!far, "rotate 90 + 1e-9 within a level of the quarter turn (%d off)", far);
        free(src);
        free(img);
    }
    const int w = 10, h = 6;
    uint8_t *src = random_image(w, h, 4), *img = dup_image(src, w, h);
    for (int dx = -3; dx <= 3; dx += 3)
        for (int dy = -2; dy <= 2; dy += 2) {
            memcpy(img, src, (size_t)w * h * 3);
            aug_translate(img, w, h, dx, dy);
            int bad = 0;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    const int sx = x + dx, sy = y + dy, in = sx >= 0 && sx < w && sy >= 0 && sy < h;
                    bad += memcmp(px(img, w, x, y), in ? px(src, w, sx, sy) : fill, 3) != 0;
                }
            CHECK(!bad, "translate (%d, %d): %d pixels wrong", dx, dy, bad);
        }
    memcpy(img, src, (size_t)w * h * 3);
    aug_shear_x(img, w, h, 0);
    CHECK(same(img, src, w, h), "shear 0 is the identity");
    // a horizontal shear of 1 moves row y by y + 1/2 pixels: a half-pixel blend of two source pixels
    memcpy(img, src, (size_t)w * h * 3);
    aug_shear_x(img, w, h, 1.0);
    const int x = 2, y = 1;     // source x = 2 + 1.5 = 3.5: halfway between pixels 3 and 4 of row 1
    int bad = 0;
    for (int c = 0; c < 3; c++) {
        const double want = (px(src, w, 3, y)[c] + px(src, w, 4, y)[c]) / 2.0;
        bad += fabs(px(img, w, x, y)[c] - want) > 0.5 + 1e-9;
    }
    CHECK(!bad, "shear x 1: a half-pixel bilinear blend");
    free(src);
    free(img);
}

static void test_mappings(void) {
    const int w = 12, h = 12;
    uint8_t *src = random_image(w, h, 5), *a = dup_image(src, w, h), *b = dup_image(src, w, h);
    // magnitude 9: posterize to 4 - int(3.6) = 1 bit, solarize above 256 - int(230.4) = 26, add int(99) = 99
    aug_apply(a, w, h, AUG_POSTERIZE, 9, 0); aug_posterize(b, w, h, 1);
    CHECK(same(a, b, w, h), "posterize at 9: 1 bit");
    memcpy(a, src, (size_t)w * h * 3); memcpy(b, src, (size_t)w * h * 3);
    aug_apply(a, w, h, AUG_SOLARIZE, 9, 1); aug_solarize(b, w, h, 26);
    CHECK(same(a, b, w, h), "solarize at 9: threshold 26");
    memcpy(a, src, (size_t)w * h * 3); memcpy(b, src, (size_t)w * h * 3);
    aug_apply(a, w, h, AUG_SOLARIZE_ADD, 9, 0); aug_solarize_add(b, w, h, 99, 128);
    CHECK(same(a, b, w, h), "solarize-add at 9: 99");
    // the enhancements: 1 +- 0.9 x 0.9 (1.81 or 0.19); brightness as a direct product
    memcpy(a, src, (size_t)w * h * 3);
    aug_apply(a, w, h, AUG_BRIGHTNESS, 9, 1);
    int bad = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) bad += a[i] != (uint8_t)(src[i] * (1.0 + (-1.0 * 0.9) * (9 / 10.0)));
    CHECK(!bad, "brightness at 9, negated: x 0.19 (%d wrong)", bad);
    // translate at 10: 0.45 x 12 = 5.4 pixels
    memcpy(a, src, (size_t)w * h * 3); memcpy(b, src, (size_t)w * h * 3);
    aug_apply(a, w, h, AUG_TRANSLATE_X, 10, 1); aug_translate(b, w, h, -1.0 * 0.45 * 1.0 * 12, 0);
    CHECK(same(a, b, w, h), "translate-x at 10, negated: -5.4 pixels");
    memcpy(a, src, (size_t)w * h * 3); memcpy(b, src, (size_t)w * h * 3);
    aug_apply(a, w, h, AUG_ROTATE, 5, 0); aug_rotate(b, w, h, 15);
    CHECK(same(a, b, w, h), "rotate at 5: 15 degrees");
    memcpy(a, src, (size_t)w * h * 3); memcpy(b, src, (size_t)w * h * 3);
    aug_apply(a, w, h, AUG_SHEAR_Y, 10, 1); aug_shear_y(b, w, h, -0.3);
    CHECK(same(a, b, w, h), "shear-y at 10, negated: -0.3");
    free(src); free(a); free(b);
}

static void test_randaugment(void) {
    const int w = 32, h = 24;
    uint8_t *src = random_image(w, h, 6);
    const ImAugment aug = {.randaug = 1, .reprob = 0.25, .repeat = 1, .mean = {0.485, 0.456, 0.406},
                           .std = {0.229, 0.224, 0.225}};
    int differ = 0, changed = 0, equal_keys = 1;
    for (uint64_t i = 0; i < 40; i++) {
        uint8_t *a = dup_image(src, w, h), *b = dup_image(src, w, h), *c = dup_image(src, w, h);
        aug_image(a, w, h, &aug, 7, 3, i);
        aug_image(b, w, h, &aug, 7, 3, i);
        aug_image(c, w, h, &aug, 7, 4, i);
        equal_keys &= same(a, b, w, h);
        differ += !same(a, c, w, h);
        changed += !same(a, src, w, h);
        free(a); free(b); free(c);
    }
    CHECK(equal_keys, "equal keys, equal pictures");
    // a picture is left alone only when both ops are skipped (1/4) and nothing is erased (3/4): 3/16
    CHECK(differ >= 25, "another epoch, another picture: %d of 40", differ);
    CHECK(changed >= 25 && changed < 40, "augmented pictures: %d of 40 (about 81%% expected)", changed);
    // the ops are drawn uniformly: each of the 15 among 2 x 3000 draws about 400 times
    int count[AUG_NOPS] = {0};
    for (uint64_t i = 0; i < 3000; i++) {
        uint64_t r = aug_rng(1, 0, i, AUG_STREAM_RANDAUG);
        for (int k = 0; k < AUG_RA_OPS; k++) count[((unsigned __int128)splitmix64(&r) * AUG_NOPS) >> 64]++;
    }
    int off = 0;
    for (int k = 0; k < AUG_NOPS; k++) off += fabs(count[k] - 400.0) > 4 * sqrt(400.0 * 14 / 15);
    CHECK(!off, "the ops' counts within 4 sigma of uniform (%d off)", off);
    free(src);
}

static void test_erasing(void) {
    const int w = 224, h = 224;
    const double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
    uint8_t *src = xmalloc((size_t)w * h * 3), *img = xmalloc((size_t)w * h * 3);
    memset(src, 0, (size_t)w * h * 3);      // black: any erased value of noise is distinguishable from it... mostly
    int erased = 0, bad_box = 0, outside = 0;
    double s1 = 0, s2 = 0, cnt = 0;
    const int draws = 4000;
    for (int i = 0; i < draws; i++) {
        uint64_t rng = aug_rng(11, 0, (uint64_t)i, AUG_STREAM_ERASE);
        memcpy(img, src, (size_t)w * h * 3);
        int box[4];
        if (!aug_erase(img, w, h, 0.25, mean, sd, &rng, box)) continue;
        erased++;
        const double area = (double)box[2] * box[3], aspect = (double)box[3] / box[2];
        // the rounding of each side moves the area and aspect a little from the drawn ones
        if (!(area >= 0.02 * w * h * 0.9 && area <= w * h / 3.0 * 1.1 && aspect >= 0.3 * 0.9 && aspect <= 1 / 0.3 * 1.1 &&
              box[0] >= 0 && box[1] >= 0 && box[0] + box[2] <= w && box[1] + box[3] <= h && box[2] < w && box[3] < h))
            bad_box++;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const int in = x >= box[0] && x < box[0] + box[2] && y >= box[1] && y < box[1] + box[3];
                const uint8_t *p = px(img, w, x, y);
                if (!in) outside += p[0] || p[1] || p[2];
                else if (i < 200)
                    for (int c = 0; c < 3; c++) {
                        const double z = (p[c] / 255.0 - mean[c]) / sd[c];
                        s1 += z; s2 += z * z; cnt++;
                    }
            }
    }
    const double sigma = sqrt(draws * 0.25 * 0.75);
    CHECK(fabs(erased - draws * 0.25) <= 4 * sigma, "erased %d of %d, expected %.0f +- %.0f", erased, draws, draws * 0.25,
          4 * sigma);
    CHECK(!bad_box, "%d boxes out of the area 0.02-1/3, aspect 0.3-3.3 or the picture", bad_box);
    CHECK(!outside, "%d values changed outside the box", outside);
    // the noise in the normalised space: mean 0, standard deviation 1 less the clipping at about +-2.1 sigma
    const double m = s1 / cnt, sdv = sqrt(s2 / cnt - m * m);
    CHECK(cnt > 1000 && fabs(m) < 0.03 && sdv > 0.9 && sdv < 1.0, "the noise's mean %.4f and std %.4f over %.0f values", m,
          sdv, cnt);
    int never = 0;
    for (int i = 0; i < 500; i++) {
        uint64_t rng = aug_rng(11, 0, (uint64_t)i, AUG_STREAM_ERASE);
        never += aug_erase(img, w, h, 0, mean, sd, &rng, NULL);
    }
    CHECK(!never, "probability 0 never erases");
    free(src);
    free(img);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) die("test: cannot write %s", path);
}

// Repeated augmentation: the index functions, then the loader on a prepared set of 10 pictures whose
// labels are their numbers (a batch of 10 is one epoch).
static void test_repeated(void) {
    const int n = 10, R = 3;
    // the untruncated list (3n positions): each example R times, in runs
    int seen[10] = {0}, runs = 1;
    for (uint64_t j = 0; j < (uint64_t)n * R; j++) {
        seen[aug_repeat_source(j, R)]++;
        if (j % R) runs &= aug_repeat_source(j, R) == aug_repeat_source(j - 1, R);
    }
    int all3 = 1;
    for (int i = 0; i < n; i++) all3 &= seen[i] == R;
    CHECK(all3 && runs, "the untruncated list holds each example %d times in a row", R);
    CHECK(aug_repeat_key(5, 7, 3) == 16 && aug_repeat_key(5, 8, 3) == 17 && aug_repeat_key(5, 9, 3) == 15 &&
          aug_repeat_key(5, 9, 1) == 5, "the copies' keys");
    if (!jpeg_available()) { printf("SKIP: the loader check (no JPEG support in this build)\n"); return; }
    if (system("rm -rf " TMP) != 0) die("test: cannot clear " TMP);
    mkdir_p(TMP "/img");
    char *list = xstrdup(""), *path;
    for (int i = 0; i < n; i++) {
        const int W = 48, H = 40;
        uint8_t *p = xmalloc((size_t)W * H * 3);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *q = p + ((size_t)y * W + x) * 3;
                q[0] = (uint8_t)(x * 5); q[1] = (uint8_t)(y * 6); q[2] = (uint8_t)(i * 20 + (x ^ y));
            }
        uint8_t *jpg;
        size_t len;
        char err[200];
        if (jpeg_encode_rgb(p, W, H, 95, &jpg, &len, err, sizeof err)) die("test: %s", err);
        path = xasprintf(TMP "/img/%d.jpg", i);
        write_file(path, jpg, len);
        char *l2 = xasprintf("%simg/%d.jpg %d\n", list, i, i);
        free(list); list = l2;
        free(path); free(jpg); free(p);
    }
    write_file(TMP "/train.txt", list, strlen(list));
    write_file(TMP "/val.txt", "img/0.jpg 0\n", 12);
    free(list);
    ImagenetPrepareOptions o = {.train_list = TMP "/train.txt", .val_list = TMP "/val.txt", .classes = n,
                                .out = TMP "/data", .short_side = 64, .quality = 95, .threads = 2};
    imagenet_prepare(&o);
    const int side = 16;
    ImAugment aug = {.randaug = 1, .reprob = 0.25, .repeat = R, .mean = {0.485, 0.456, 0.406}, .std = {0.229, 0.224, 0.225}};
    ImLoader *l = im_loader_open(TMP "/data", "train", n, side, 1, 5, 2, &aug);
    const size_t vals = (size_t)side * side * 3;
    const uint8_t *pix;
    int32_t labels[10];
    for (int epoch = 0; epoch < 2; epoch++) {
        CHECK(im_loader_next(l, &pix, labels) == n, "a full batch");
        // 10 positions: examples perm[0..3], the first three 3 times in a row, the fourth once
        int ok = 1, copies_differ = 1;
        for (int j = 0; j < n; j++) {
            if (j % R) {
                ok &= labels[j] == labels[j - 1];
                copies_differ &= memcmp(pix + j * vals, pix + (j - 1) * vals, vals) != 0;
            } else if (j) ok &= labels[j] != labels[j - 1];
        }
        CHECK(ok, "epoch %d: each drawn example 3 times in a row: %d %d %d %d %d %d %d %d %d %d", epoch, labels[0],
              labels[1], labels[2], labels[3], labels[4], labels[5], labels[6], labels[7], labels[8], labels[9]);
        CHECK(copies_differ, "epoch %d: the copies are augmented differently", epoch);
        const ExampleLoaderState st = im_loader_get_state(l);
        CHECK(st.epoch == (uint64_t)epoch + 1 && st.index == 0, "an epoch is the dataset's %d positions", n);
    }
    im_loader_close(l);
    // repeat 1: a permutation, each example once an epoch
    aug.repeat = 1;
    l = im_loader_open(TMP "/data", "train", n, side, 1, 5, 2, &aug);
    im_loader_next(l, &pix, labels);
    int once[10] = {0}, perm_ok = 1;
    for (int j = 0; j < n; j++) once[labels[j]]++;
    for (int i = 0; i < n; i++) perm_ok &= once[i] == 1;
    CHECK(perm_ok, "repeat 1: each example once an epoch");
    im_loader_close(l);
}

// The samplers behind mixup's and cutmix's lam: over n draws, Gamma(a)'s mean a and variance a (both sides of
// a = 1, where the sampler switches to the boosted form), Beta(a, a)'s mean 1/2 and variance 1 / (4 (2a + 1))
// for the recipe's alphas, and an asymmetric Beta's mean a / (a + b); each within 4 standard errors, the error
// of a variance estimated from the draws' own squared deviations. Every draw is finite and Beta's in [0, 1].
static void moments(const double *x, int n, double mu, double *mean, double *se_mean, double *var, double *se_var) {
    double s = 0, s2 = 0, q = 0, q2 = 0;
    for (int i = 0; i < n; i++) { s += x[i]; s2 += x[i] * x[i]; }
    *mean = s / n;
    *se_mean = sqrt((s2 / n - *mean * *mean) / n);
    for (int i = 0; i < n; i++) { const double d = (x[i] - mu) * (x[i] - mu); q += d; q2 += d * d; }
    *var = q / n;
    *se_var = sqrt((q2 / n - *var * *var) / n);
}

static void test_gamma_beta(void) {
    enum { N = 200000 };
    double *x = xmalloc(N * sizeof(double)), m, sm, v, sv;
    static const double shapes[] = {0.3, 0.8, 1.0, 2.5};
    for (int k = 0; k < 4; k++) {
        const double a = shapes[k];
        uint64_t r = 1000 + (uint64_t)k;
        int bad = 0;
        for (int i = 0; i < N; i++) { x[i] = aug_gamma(&r, a); bad += !(x[i] >= 0 && isfinite(x[i])); }
        moments(x, N, a, &m, &sm, &v, &sv);
        CHECK(!bad, "Gamma(%g): %d draws not finite and >= 0", a, bad);
        CHECK(fabs(m - a) < 4 * sm, "Gamma(%g): mean %.5f, want %g (standard error %.5f)", a, m, a, sm);
        CHECK(fabs(v - a) < 4 * sv, "Gamma(%g): variance %.5f, want %g (standard error %.5f)", a, v, a, sv);
        printf("Gamma(%g) over %d draws: mean %.4f (want %g), variance %.4f (want %g)\n", a, N, m, a, v, a);
    }
    static const double alphas[] = {0.8, 1.0, 0.1};
    for (int k = 0; k < 3; k++) {
        const double a = alphas[k], want = 1 / (4 * (2 * a + 1));
        uint64_t r = 2000 + (uint64_t)k;
        int bad = 0;
        for (int i = 0; i < N; i++) { x[i] = aug_beta(&r, a, a); bad += !(x[i] >= 0 && x[i] <= 1); }
        moments(x, N, 0.5, &m, &sm, &v, &sv);
        CHECK(!bad, "Beta(%g, %g): %d draws outside [0, 1]", a, a, bad);
        CHECK(fabs(m - 0.5) < 4 * sm, "Beta(%g, %g): mean %.5f, want 0.5 (standard error %.5f)", a, a, m, sm);
        CHECK(fabs(v - want) < 4 * sv, "Beta(%g, %g): variance %.5f, want %.5f (standard error %.5f)", a, a, v, want, sv);
        printf("Beta(%g, %g) over %d draws: mean %.4f (want 0.5), variance %.5f (want %.5f)\n", a, a, N, m, v, want);
    }
    uint64_t r = 3000;
    for (int i = 0; i < N; i++) x[i] = aug_beta(&r, 2.0, 0.5);
    moments(x, N, 0.8, &m, &sm, &v, &sv);
    CHECK(fabs(m - 0.8) < 4 * sm, "Beta(2, 0.5): mean %.5f, want 0.8 (standard error %.5f)", m, sm);
    // the same state, the same draw; the draws move the state
    uint64_t r1 = 77, r2 = 77;
    const double b1 = aug_beta(&r1, 0.8, 0.8), b2 = aug_beta(&r2, 0.8, 0.8);
    CHECK(b1 == b2 && r1 == r2, "Beta from equal states: %.17g and %.17g", b1, b2);
    CHECK(aug_beta(&r1, 0.8, 0.8) != b1, "two Beta draws in a row are equal");
    free(x);
}

int main(void) {
    test_point_ops();
    test_histogram_ops();
    test_affine();
    test_mappings();
    test_randaugment();
    test_erasing();
    test_repeated();
    test_gamma_beta();
    return check_summary("test_augment");
}
