// augment.c: RandAugment, random erasing and the repeated augmentation's keys (augment.h). The ops follow
// PIL's definitions (ImageOps, ImageEnhance, Image.transform) that timm's RandAugment calls; the mappings of
// magnitude to parameter are timm's increasing set. Written here; docs/imagenet.md gives the choices made.
#include <math.h>

#include "augment.h"
#include "jpeg.h"

const char *const AUG_OP_NAMES[AUG_NOPS] = {
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel"};

uint64_t aug_rng(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t stream) {
    // the crop's generator state, moved to a stream of its own
    return mix64(image_rng(seed, epoch, index) ^ mix64(stream ^ 0x6175676D656E7473ull));
}

static int rng_below(uint64_t *s, int n) { return (int)(((unsigned __int128)splitmix64(s) * (uint64_t)n) >> 64); }

static uint8_t clip8(double v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; }

static size_t npix(int w, int h) { return (size_t)w * (size_t)h; }

// Applies lut[channel][value] to every value.
static void apply_lut(uint8_t *img, int w, int h, uint8_t lut[3][256]) {
    const size_t n = npix(w, h) * 3;
    for (size_t i = 0; i < n; i++) img[i] = lut[i % 3][img[i]];
}

static void histograms(const uint8_t *img, int w, int h, uint64_t hist[3][256]) {
    memset(hist, 0, 3 * 256 * sizeof(uint64_t));
    const size_t n = npix(w, h) * 3;
    for (size_t i = 0; i < n; i++) hist[i % 3][img[i]]++;
}

void aug_autocontrast(uint8_t *img, int w, int h) {
    uint64_t hist[3][256];
    uint8_t lut[3][256];
    histograms(img, w, h, hist);
    for (int c = 0; c < 3; c++) {
        int lo = 0, hi = 255;
        while (lo < 255 && !hist[c][lo]) lo++;
        while (hi > 0 && !hist[c][hi]) hi--;
        for (int v = 0; v < 256; v++) {
            if (hi <= lo) { lut[c][v] = (uint8_t)v; continue; }    // one value: left as it is
            const double scale = 255.0 / (hi - lo), offset = -lo * scale;
            int x = (int)(v * scale + offset);       // truncated, as PIL does
            lut[c][v] = (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : x);
        }
    }
    apply_lut(img, w, h, lut);
}

void aug_equalize(uint8_t *img, int w, int h) {
    uint64_t hist[3][256];
    uint8_t lut[3][256];
    histograms(img, w, h, hist);
    for (int c = 0; c < 3; c++) {
        // PIL's: the step is the count of all values but those of the highest one, / 255; each value maps to
        // the count below it (+ half a step) in steps
        uint64_t total = 0, last = 0;
        int used = 0;
        for (int v = 0; v < 256; v++)
            if (hist[c][v]) { total += hist[c][v]; last = hist[c][v]; used++; }
        const uint64_t step = used > 1 ? (total - last) / 255 : 0;
        uint64_t n = step / 2;
        for (int v = 0; v < 256; v++) {
            if (!step) { lut[c][v] = (uint8_t)v; continue; }
            const uint64_t x = n / step;
            lut[c][v] = (uint8_t)(x > 255 ? 255 : x);
            n += hist[c][v];
        }
    }
    apply_lut(img, w, h, lut);
}

void aug_invert(uint8_t *img, int w, int h) {
    const size_t n = npix(w, h) * 3;
    for (size_t i = 0; i < n; i++) img[i] = (uint8_t)(255 - img[i]);
}

void aug_posterize(uint8_t *img, int w, int h, int bits) {
    if (bits >= 8) return;
    if (bits < 0) bits = 0;
    const uint8_t mask = (uint8_t)(0xFF00 >> bits);
    const size_t n = npix(w, h) * 3;
    for (size_t i = 0; i < n; i++) img[i] &= mask;
}

void aug_solarize(uint8_t *img, int w, int h, int thresh) {
    const size_t n = npix(w, h) * 3;
    for (size_t i = 0; i < n; i++)
        if (img[i] >= thresh) img[i] = (uint8_t)(255 - img[i]);
}

void aug_solarize_add(uint8_t *img, int w, int h, int add, int thresh) {
    const size_t n = npix(w, h) * 3;
    for (size_t i = 0; i < n; i++)
        if (img[i] < thresh) { int v = img[i] + add; img[i] = (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v); }
}

// PIL's gray of a pixel (ITU-R 601-2 luma, in 16-bit fixed point, rounded)
static int gray(const uint8_t *p) { return (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16; }

// out = deg + factor (img - deg), truncated and clipped as PIL's blend does
static uint8_t blend(int deg, int v, double factor) { return clip8(deg + factor * (v - deg)); }

void aug_color(uint8_t *img, int w, int h, double factor) {
    for (size_t i = 0; i < npix(w, h); i++) {
        uint8_t *p = img + 3 * i;
        const int g = gray(p);
        for (int c = 0; c < 3; c++) p[c] = blend(g, p[c], factor);
    }
}

void aug_contrast(uint8_t *img, int w, int h, double factor) {
    uint64_t sum = 0;
    for (size_t i = 0; i < npix(w, h); i++) sum += (uint64_t)gray(img + 3 * i);
    const int mean = (int)((double)sum / (double)npix(w, h) + 0.5);
    const size_t n = npix(w, h) * 3;
    for (size_t i = 0; i < n; i++) img[i] = blend(mean, img[i], factor);
}

void aug_brightness(uint8_t *img, int w, int h, double factor) {
    const size_t n = npix(w, h) * 3;
    for (size_t i = 0; i < n; i++) img[i] = blend(0, img[i], factor);
}

void aug_sharpness(uint8_t *img, int w, int h, double factor) {
    if (w < 3 || h < 3) return;         // all border: the smoothed picture is the picture
    uint8_t *deg = xmalloc(npix(w, h) * 3);
    memcpy(deg, img, npix(w, h) * 3);
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++)
            for (int c = 0; c < 3; c++) {
                int s = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) s += img[((size_t)(y + dy) * w + (x + dx)) * 3 + c];
                s += 4 * img[((size_t)y * w + x) * 3 + c];     // the center's weight is 5
                deg[((size_t)y * w + x) * 3 + c] = clip8(s / 13.0 + 0.5);
            }
    const size_t n = npix(w, h) * 3;
    for (size_t i = 0; i < n; i++) img[i] = blend(deg[i], img[i], factor);
    free(deg);
}

void aug_affine(uint8_t *img, int w, int h, const double m[6]) {
    static const uint8_t fill[3] = {AUG_FILL_R, AUG_FILL_G, AUG_FILL_B};
    uint8_t *src = xmalloc(npix(w, h) * 3);
    memcpy(src, img, npix(w, h) * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const double X = x + 0.5, Y = y + 0.5;
            const double u = m[0] * X + m[1] * Y + m[2], v = m[3] * X + m[4] * Y + m[5];
            uint8_t *o = img + ((size_t)y * w + x) * 3;
            if (!(u >= 0 && v >= 0 && u < w && v < h)) { memcpy(o, fill, 3); continue; }    // NaN too
            const double xs = u - 0.5, ys = v - 0.5;
            const int x0 = (int)floor(xs), y0 = (int)floor(ys);
            const double fx = xs - x0, fy = ys - y0;
            const int xa = x0 < 0 ? 0 : x0, xb = x0 + 1 > w - 1 ? w - 1 : x0 + 1;
            const int ya = y0 < 0 ? 0 : y0, yb = y0 + 1 > h - 1 ? h - 1 : y0 + 1;
            const uint8_t *p00 = src + ((size_t)ya * w + xa) * 3, *p01 = src + ((size_t)ya * w + xb) * 3;
            const uint8_t *p10 = src + ((size_t)yb * w + xa) * 3, *p11 = src + ((size_t)yb * w + xb) * 3;
            for (int c = 0; c < 3; c++) {
                const double top = p00[c] + fx * (p01[c] - p00[c]), bot = p10[c] + fx * (p11[c] - p10[c]);
                o[c] = clip8(top + fy * (bot - top) + 0.5);
            }
        }
    free(src);
}

void aug_rotate(uint8_t *img, int w, int h, double degrees) {
    // the output's point at angle t about the center comes from the source's at angle t - degrees
    const double a = -degrees * M_PI / 180.0, cx = w / 2.0, cy = h / 2.0;
    double cs = cos(a), sn = sin(a);
    // exact quarter turns stay exact (cos(pi / 2) is 6e-17 in doubles)
    const double q = degrees / 90.0;
    if (q == floor(q)) {
        static const double C[4] = {1, 0, -1, 0}, S[4] = {0, -1, 0, 1};    // cos and sin of -90 q degrees
        const int k = (int)(((long long)q % 4 + 4) % 4);
        cs = C[k]; sn = S[k];
    }
    const double m[6] = {cs, sn, cx - cs * cx - sn * cy, -sn, cs, cy + sn * cx - cs * cy};
    aug_affine(img, w, h, m);
}

void aug_shear_x(uint8_t *img, int w, int h, double s) { const double m[6] = {1, s, 0, 0, 1, 0}; aug_affine(img, w, h, m); }
void aug_shear_y(uint8_t *img, int w, int h, double s) { const double m[6] = {1, 0, 0, s, 1, 0}; aug_affine(img, w, h, m); }
void aug_translate(uint8_t *img, int w, int h, double dx, double dy) {
    const double m[6] = {1, 0, dx, 0, 1, dy};
    aug_affine(img, w, h, m);
}

void aug_apply(uint8_t *img, int w, int h, int op, double mag, int neg) {
    const double l = mag / 10.0, sgn = neg ? -1.0 : 1.0;
    // the enhancements' factor: 1 +- 0.9 l, at least 0.1
    const double f = fmax(0.1, 1.0 + sgn * 0.9 * l);
    switch (op) {
    case AUG_AUTOCONTRAST: aug_autocontrast(img, w, h); break;
    case AUG_EQUALIZE: aug_equalize(img, w, h); break;
    case AUG_INVERT: aug_invert(img, w, h); break;
    case AUG_ROTATE: aug_rotate(img, w, h, sgn * 30.0 * l); break;
    case AUG_POSTERIZE: aug_posterize(img, w, h, 4 - (int)(4.0 * l)); break;
    case AUG_SOLARIZE: aug_solarize(img, w, h, 256 - (int)(256.0 * l)); break;
    case AUG_SOLARIZE_ADD: aug_solarize_add(img, w, h, (int)(110.0 * l), 128); break;
    case AUG_COLOR: aug_color(img, w, h, f); break;
    case AUG_CONTRAST: aug_contrast(img, w, h, f); break;
    case AUG_BRIGHTNESS: aug_brightness(img, w, h, f); break;
    case AUG_SHARPNESS: aug_sharpness(img, w, h, f); break;
    case AUG_SHEAR_X: aug_shear_x(img, w, h, sgn * 0.3 * l); break;
    case AUG_SHEAR_Y: aug_shear_y(img, w, h, sgn * 0.3 * l); break;
    case AUG_TRANSLATE_X: aug_translate(img, w, h, sgn * 0.45 * l * w, 0); break;
    case AUG_TRANSLATE_Y: aug_translate(img, w, h, 0, sgn * 0.45 * l * h); break;
    default: die("internal error: augmentation op %d", op);
    }
}

void aug_randaugment(uint8_t *img, int w, int h, uint64_t *rng) {
    // the ops first (uniform, with replacement), then per op: whether it applies, its magnitude, its sign
    int ops[AUG_RA_OPS];
    for (int i = 0; i < AUG_RA_OPS; i++) ops[i] = rng_below(rng, AUG_NOPS);
    for (int i = 0; i < AUG_RA_OPS; i++) {
        if (rng_uniform(rng) >= AUG_RA_PROB) continue;
        double mag = AUG_RA_MAG + AUG_RA_MSTD * rng_normal(rng);
        mag = mag < 0 ? 0 : mag > 10 ? 10 : mag;
        const int neg = rng_uniform(rng) < 0.5;
        aug_apply(img, w, h, ops[i], mag, neg);
    }
}

int aug_erase(uint8_t *img, int w, int h, double p, const double mean[3], const double std[3], uint64_t *rng,
              int box[4]) {
    if (!(rng_uniform(rng) < p)) return 0;
    const double area = (double)w * h, lr0 = log(0.3), lr1 = log(1 / 0.3);
    for (int attempt = 0; attempt < 10; attempt++) {
        const double target = area * (0.02 + (1.0 / 3 - 0.02) * rng_uniform(rng));
        const double aspect = exp(lr0 + (lr1 - lr0) * rng_uniform(rng));
        const int eh = (int)nearbyint(sqrt(target * aspect)), ew = (int)nearbyint(sqrt(target / aspect));
        if (ew >= w || eh >= h) continue;
        const int top = rng_below(rng, h - eh + 1), left = rng_below(rng, w - ew + 1);
        for (int y = top; y < top + eh; y++)
            for (int x = left; x < left + ew; x++)
                for (int c = 0; c < 3; c++)
                    img[((size_t)y * w + x) * 3 + c] = clip8(255.0 * (mean[c] + std[c] * rng_normal(rng)) + 0.5);
        if (box) { box[0] = left; box[1] = top; box[2] = ew; box[3] = eh; }
        return 1;
    }
    return 0;
}

double aug_log_gamma_draw(uint64_t *rng, double a) {
    if (!(a > 0)) die("internal error: a Gamma draw of shape %g", a);
    // a < 1: Gamma(a) = Gamma(a + 1) U^(1/a), U in (0, 1]
    double boost = 0;
    if (a < 1) {
        boost = log(1.0 - rng_uniform(rng)) / a;
        a += 1;
    }
    const double d = a - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        const double x = rng_normal(rng), t = 1 + c * x;
        if (t <= 0) continue;
        const double v = t * t * t, u = 1.0 - rng_uniform(rng);    // u in (0, 1]: log(u) is finite
        if (u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v))) return log(d * v) + boost;
    }
}

double aug_gamma(uint64_t *rng, double a) { return exp(aug_log_gamma_draw(rng, a)); }

double aug_beta(uint64_t *rng, double a, double b) {
    const double lx = aug_log_gamma_draw(rng, a), ly = aug_log_gamma_draw(rng, b);
    // X / (X + Y) = 1 / (1 + exp(ly - lx))
    return 1 / (1 + exp(ly - lx));
}

void aug_image(uint8_t *img, int w, int h, const ImAugment *a, uint64_t seed, uint64_t epoch, uint64_t index) {
    if (!a) return;
    if (a->randaug) {
        uint64_t rng = aug_rng(seed, epoch, index, AUG_STREAM_RANDAUG);
        aug_randaugment(img, w, h, &rng);
    }
    if (a->reprob > 0) {
        uint64_t rng = aug_rng(seed, epoch, index, AUG_STREAM_ERASE);
        aug_erase(img, w, h, a->reprob, a->mean, a->std, &rng, NULL);
    }
}
