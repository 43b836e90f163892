// jpeg.h: JPEG in memory through libjpeg-turbo (decode to 8-bit RGB, encode RGB at a quality) and the image
// transforms of the ImageNet recipe: antialiased bicubic resizing, the center crop of evaluation, the random
// resized crop and flip of training drawn from a counter-based generator. Code in jpeg.c; docs/imagenet.md.
#ifndef HGRN2_JPEG_H
#define HGRN2_JPEG_H

#include "common.h"

// Images larger than this are refused before anything is allocated for their pixels. The fuzz build
// (make fuzz) takes a smaller pixel limit, so that an input of a few bytes declaring a huge image (legal:
// libjpeg decodes what data there is and reports the damage) costs the fuzzer milliseconds, not seconds.
#define JPEG_SIDE_MAX 32768
#ifndef JPEG_PIXELS_MAX
#define JPEG_PIXELS_MAX (1u << 28)
#endif
// A Huffman-coded file declaring more pixels than this many per byte of the file is refused from its header
// too: a complete JPEG cannot hold them (jpeg.c says why).
#define JPEG_PIXELS_PER_BYTE 512
// Progressive files of more scans than this are refused: a crafted file of many empty scans would otherwise
// take minutes to decode.
#define JPEG_SCANS_MAX 500

// 1 when the build has libjpeg-turbo, 0 when it was built without (make setup installs libjpeg62-turbo-dev);
// then decoding and encoding return -1 with that reason.
int jpeg_available(void);

// Decodes data[0, n) to 8-bit RGB rows (*rgb, w * h * 3 bytes, malloc'd; the caller frees it): grayscale is
// expanded, CMYK and YCCK converted (Adobe files store inverted CMYK, as libjpeg reports it), progressive
// files read as any other. Returns 0; -1 with the reason in err for a file that is not a JPEG, is corrupt,
// ends early (truncated), is larger than JPEG_SIDE_MAX a side or JPEG_PIXELS_MAX pixels, or (Huffman-coded)
// declares more than JPEG_PIXELS_PER_BYTE pixels a byte of the file. *warnings
// (when not NULL) counts libjpeg's warnings about recoverable damage in a file that did decode.
int jpeg_decode_rgb(const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h, int *warnings, char *err, size_t errlen);
// Encodes rgb[h][w][3] as a baseline JPEG (4:2:0, optimised Huffman tables) at quality 1-100 into *out
// (malloc'd, *n bytes). Returns 0, or -1 with the reason in err.
int jpeg_encode_rgb(const uint8_t *rgb, int w, int h, int quality, uint8_t **out, size_t *n, char *err, size_t errlen);

// ---- resampling (RGB, 3 bytes a pixel, rows packed) ----
// The bicubic kernel (a = -0.5, PIL's and torchvision's); its support is 2 pixels of the source when
// enlarging and 2 pixels of the output (2 x the shrink factor of the source) when shrinking, so that a
// shrink averages over what it drops (antialiasing).
double image_bicubic(double x);
typedef struct { int x, y, w, h; } ImageBox;   // a rectangle of the source, in pixels
// Resamples the box of src (sw x sh) to dst (dw x dh): separable, horizontal pass then vertical, in float
// with one rounding at the end (PIL rounds to 8 bits between the passes too). Taps are clamped to the box,
// so the result is that of cropping first. Dies on a box outside the image or a size below 1.
void image_resize(const uint8_t *src, int sw, int sh, ImageBox box, uint8_t *dst, int dw, int dh);
// The size of an image whose short side becomes `side` (the long side scaled and truncated, as
// torchvision's Resize(int) does; at least 1).
void image_short_side(int w, int h, int side, int *ow, int *oh);
void image_flip(uint8_t *rgb, int w, int h);   // in place, left to right

// ---- the recipe's random crop ----
// The generator of one example's draws: a function of (seed, epoch, example index) alone, so a resumed run
// draws what an uninterrupted one did.
uint64_t image_rng(uint64_t seed, uint64_t epoch, uint64_t index);
// torchvision's RandomResizedCrop.get_params on a w x h image: up to 10 attempts of an area drawn uniformly
// in [smin, smax] x w x h and an aspect ratio drawn log-uniformly in [rmin, rmax], w' = round(sqrt(area x
// ratio)), h' = round(sqrt(area / ratio)); the first that fits is placed uniformly; else the whole image,
// cut to the nearest ratio in range, centered. *attempts (when not NULL): the attempt that fit (1-10), or 0
// for the fallback.
ImageBox image_random_crop(int w, int h, uint64_t *rng, double smin, double smax, double rmin, double rmax, int *attempts);

// The two transforms of the recipe, from decoded RGB to out[side][side][3]:
// evaluation: resize so the short side is `resize` (bicubic), center crop side x side;
// training: random resized crop (scale 0.08-1, ratio 3/4-4/3) resized to side x side (bicubic), then a
// horizontal flip with probability 1/2, all drawn from image_rng(seed, epoch, index).
#define IMAGENET_SIDE 224
#define IMAGENET_RESIZE 256
void image_eval_transform(const uint8_t *rgb, int w, int h, int resize, int side, uint8_t *out);
void image_train_transform(const uint8_t *rgb, int w, int h, int side, uint64_t seed, uint64_t epoch, uint64_t index,
                           uint8_t *out);

#endif
