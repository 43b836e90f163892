// images.h: image classification data: `prepare` for CIFAR-10 (the Long Range Arena's Image task), Pathfinder,
// Path-X and Fashion-MNIST from their official files (images.c), and a Pathfinder generator that writes the
// official layout (pathfinder.c). Images become example files of pixel tokens; formats, splits, seeds and the
// generator's geometry: docs/images.md.
#ifndef HGRN2_IMAGES_H
#define HGRN2_IMAGES_H

#include "common.h"

// ---- the storage convention (docs/images.md) ----
// One document per example, one token per 8-bit channel value, H*W*C tokens in row-major order with the
// channels interleaved (y, x, c); vocabulary 256, pad id 0. The description starts "pixels HxWxC", so that a
// reader can take the shape from the first word after "pixels".
#define IMAGE_VOCAB 256
#define IMAGE_PAD 0
// The permutations that hold data out for validation (and split Pathfinder) are example_permutation
// (examples.h) of this seed, epoch 0.
#define IMAGE_SPLIT_SEED 42

typedef enum { IMAGE_CIFAR, IMAGE_PATHFINDER, IMAGE_PATHX, IMAGE_FASHION_MNIST } ImageTask;
typedef struct {
    ImageTask task;
    const char *input;        // cifar: cifar-10-batches-bin; pathfinder/pathx: the curv_contour_length_14 folder
                              // (metadata/*.npy and the images); fashion-mnist: the folder of the four IDX files
    const char *out;          // output directory: created, must not hold example files already
    int strict;               // Pathfinder: a bad metadata line or image stops the run instead of being skipped
    size_t max_line_bytes;    // Pathfinder: the longest metadata line held whole
} ImagePrepareOptions;
// "lra-image", "lra-pathfinder", "lra-pathx", "fashion-mnist"
const char *image_task_name(ImageTask task);
// Looks a name up; returns 0 and sets *task, or -1 for a name that is none of them.
int image_task_parse(const char *name, ImageTask *task);
// Writes DIR/{train,val,test}.examples, a progress line on stderr and a summary on stdout. Returns 0; any
// failure dies with one message naming the file (and record or line), leaving no file under a final name.
int images_prepare(const ImagePrepareOptions *o);

// Reads the PNG at path as 8-bit gray (libpng converts other color types and depths) into pixels[size *
// size]. Returns 0; -1 with the reason in err for a file that cannot be opened, is not a regular file or
// not a PNG, is corrupt or truncated; -2 (err set) for a good PNG of another size, *w and *h set to its size.
int png_read_gray(const char *path, int size, uint8_t *pixels, int *w, int *h, char *err, size_t errlen);
// Writes pixels[h * w] as an 8-bit grayscale PNG at path; dies naming the file on failure.
void png_write_gray(const char *path, int w, int h, const uint8_t *pixels);

// ---- the Pathfinder generator: DIR/metadata/<batch>.npy and DIR/imgs/<batch>/sample_<k>.png ----
#define PATHFINDER_BATCH 1000     // images of one metadata file and one image folder, as the official release
typedef struct {
    const char *out;          // directory: created; must not hold metadata/ or imgs/ already
    int size;                 // 32 (Pathfinder) or 128 (Path-X)
    uint64_t seed;
    uint64_t count;           // images, at least 2 (half of them positive)
} PathfinderOptions;
// Draws the images and writes them with their metadata; a progress line on stderr, a summary on stdout.
// Returns 0; dies on a write failure. The same seed, size and count give the same bytes.
int pathfinder_generate(const PathfinderOptions *o);

// The geometry of one size, which the tests need to check the images independently of the generator.
typedef struct {
    int size;
    int paddle;               // dash length, in pixels
    double gap;               // the gap between dashes, along the path
    int thickness;            // the brush: a thickness x thickness square
    double marker_radius;     // the endpoints: filled discs of this radius, value 255
    int bridge;               // dashes of one path are within this Chebyshev distance of each other;
                              // pixels of different paths (markers included) are farther apart than this
    int main_paddles;         // dashes of each of the two long paths
    int distractors, distractor_paddles;
    int turn_degrees;         // each dash turns by at most this much from the previous one
} PathfinderGeometry;
// The geometry of size 32 or 128; NULL for any other size.
const PathfinderGeometry *pathfinder_geometry(int size);

#endif
