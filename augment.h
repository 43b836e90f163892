// augment.h: the host-side augmentations of the ImageNet recipe on 8-bit RGB images (rows packed, 3 bytes a
// pixel): RandAugment (timm's "rand-m9-mstd0.5-inc1": 2 ops a picture from the increasing-severity set,
// each applied with probability 1/2 at a magnitude drawn from N(9, 0.5) clipped to [0, 10]), random
// erasing (a rectangle filled with per-pixel normal noise of the normalised space) and the repeated
// augmentation's sample list. Every draw comes from a counter-based generator keyed by (seed, epoch,
// example, stream), so a resumed run draws what an uninterrupted one did. Code in augment.c; the mappings
// of magnitude to each op's parameter and the choices made are in docs/imagenet.md.
#ifndef HGRN2_AUGMENT_H
#define HGRN2_AUGMENT_H

#include "common.h"

#define AUG_RA_OPS 2            // ops a picture
#define AUG_RA_MAG 9.0          // the magnitude's mean (of 10)
#define AUG_RA_MSTD 0.5         // its standard deviation
#define AUG_RA_PROB 0.5         // each op's probability
#define AUG_REPEAT_MAX 16
// the fill of the affine ops where the source falls outside the picture: ImageNet's mean in 8 bits
#define AUG_FILL_R 124
#define AUG_FILL_G 116
#define AUG_FILL_B 104

// What the training loader applies after the random resized crop and flip (all off: a zeroed struct with
// repeat 1). mean/std: the model's pixel normalisation, the space whose unit normal the erasing fills with.
typedef struct {
    int randaug;                // 1: RandAugment
    double reprob;              // random erasing's probability (0: off)
    int repeat;                 // repeated augmentation: each drawn example this many times (1: off)
    double mean[3], std[3];
} ImAugment;

// The ops, in timm's order of the increasing set.
enum { AUG_AUTOCONTRAST, AUG_EQUALIZE, AUG_INVERT, AUG_ROTATE, AUG_POSTERIZE, AUG_SOLARIZE, AUG_SOLARIZE_ADD,
       AUG_COLOR, AUG_CONTRAST, AUG_BRIGHTNESS, AUG_SHARPNESS, AUG_SHEAR_X, AUG_SHEAR_Y, AUG_TRANSLATE_X,
       AUG_TRANSLATE_Y, AUG_NOPS };
extern const char *const AUG_OP_NAMES[AUG_NOPS];

// The generator of one example's augmentation draws, a stream apart from the crop's (image_rng).
#define AUG_STREAM_RANDAUG 1
#define AUG_STREAM_ERASE 2
uint64_t aug_rng(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t stream);

// ---- the ops, in place on img[h][w][3] ----
void aug_autocontrast(uint8_t *img, int w, int h);     // per channel, [min, max] stretched to [0, 255]
void aug_equalize(uint8_t *img, int w, int h);         // per channel histogram equalisation (PIL's)
void aug_invert(uint8_t *img, int w, int h);
void aug_posterize(uint8_t *img, int w, int h, int bits);          // keeps the top `bits` (1-8) bits
void aug_solarize(uint8_t *img, int w, int h, int thresh);        // values >= thresh inverted
void aug_solarize_add(uint8_t *img, int w, int h, int add, int thresh);   // values < thresh get + add (clipped)
// PIL's ImageEnhance: the picture blended with a degenerate one, out = deg + factor (img - deg), clipped:
// Color (deg: its gray), Contrast (deg: its mean gray), Brightness (deg: black), Sharpness (deg: smoothed by
// the 3 x 3 kernel of 1s with 5 in the middle, / 13, the border pixels kept).
void aug_color(uint8_t *img, int w, int h, double factor);
void aug_contrast(uint8_t *img, int w, int h, double factor);
void aug_brightness(uint8_t *img, int w, int h, double factor);
void aug_sharpness(uint8_t *img, int w, int h, double factor);
// The affine ops: each output pixel center (x + 1/2, y + 1/2) maps to the source point (a X + b Y + c,
// d X + e Y + f); a point outside [0, w) x [0, h) takes the fill, one inside is sampled bilinearly between
// the pixel centers around it (clamped at the border), as PIL's transform does. m = {a, b, c, d, e, f}.
void aug_affine(uint8_t *img, int w, int h, const double m[6]);
void aug_rotate(uint8_t *img, int w, int h, double degrees);      // counter-clockwise about the center
void aug_shear_x(uint8_t *img, int w, int h, double s);           // source x = x + s y
void aug_shear_y(uint8_t *img, int w, int h, double s);
void aug_translate(uint8_t *img, int w, int h, double dx, double dy);   // source = output + (dx, dy) pixels

// One op at magnitude `mag` (0-10) with the sign `neg` (timm's random sign flip, for the ops that have one),
// the parameter from the magnitude as timm's increasing set maps it (docs/imagenet.md).
void aug_apply(uint8_t *img, int w, int h, int op, double mag, int neg);
// RandAugment as the recipe draws it, from *rng.
void aug_randaugment(uint8_t *img, int w, int h, uint64_t *rng);

// Random erasing (timm's, mode "pixel"): with probability p, up to 10 attempts of an area uniform in [0.02,
// 1/3] of the picture and an aspect log-uniform in [0.3, 1 / 0.3], h' = round(sqrt(area x aspect)), w' =
// round(sqrt(area / aspect)); the first with w' < w and h' < h is placed uniformly and each of its values
// filled with mean + std x N(0, 1) of the normalised space, in 8 bits (rounded, clipped to [0, 255]: the
// classifier normalises its 8-bit input). Returns 1 and the box when it erased, else 0.
int aug_erase(uint8_t *img, int w, int h, double p, const double mean[3], const double std[3], uint64_t *rng,
              int box[4]);

// Repeated augmentation (DeiT's RASampler on one process): the epoch's sample list is the permutation with
// each entry repeated r times in a row, cut to the dataset's size. Position j of an epoch is example
// perm[j / r], its copy j % r; the copy's draws are keyed by the epoch r epoch + copy.
static inline uint64_t aug_repeat_source(uint64_t j, int r) { return j / (uint64_t)r; }
static inline uint64_t aug_repeat_key(uint64_t epoch, uint64_t j, int r) { return epoch * (uint64_t)r + j % (uint64_t)r; }

// Gamma(a) and Beta(a, b) draws for mixup and cutmix's mixing weight, from *rng: Marsaglia and Tsang's
// method (a normal and a uniform per attempt, accepted with probability above 0.95 for a >= 1); for a < 1,
// Gamma(a + 1) U^(1/a). Beta(a, b) = X / (X + Y) of X ~ Gamma(a), Y ~ Gamma(b), formed from their logarithms
// so that tiny draws of a small a neither underflow nor divide 0 by 0. a, b > 0.
double aug_log_gamma_draw(uint64_t *rng, double a);     // log of a Gamma(a) draw
double aug_gamma(uint64_t *rng, double a);
double aug_beta(uint64_t *rng, double a, double b);

// All of the above on one cropped picture of example `index` whose draws are keyed by `epoch`.
void aug_image(uint8_t *img, int w, int h, const ImAugment *a, uint64_t seed, uint64_t epoch, uint64_t index);

#endif
