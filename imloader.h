// imloader.h: batches of ImageNet-style JPEG example files (imagenet.h) for the classifier: worker threads
// decode and transform examples ahead of the trainer into a bounded ring of batches. A batch's contents are a
// function of (seed, epoch, position) alone, never of the threads' timing or number. Code in imloader.c;
// docs/imagenet.md.
#ifndef HGRN2_IMLOADER_H
#define HGRN2_IMLOADER_H

#include "common.h"
#include "examples.h"
#include "imagenet.h"
#include "augment.h"

#define IM_RING 4               // batches in the ring: one held by the trainer, 3 decoded ahead (4 x B x side^2 x 3 bytes)
#define IM_SIDE_MIN 8

typedef struct ImLoader ImLoader;
// B examples a batch of DIR/<split>.jpegs as side x side RGB. train = 1: shuffled, each epoch a permutation of
// (seed, epoch) (example_permutation), full batches running on into the next epoch, the training transform
// (random resized crop and flip from (seed, epoch, example)); train = 0: examples in order, the last batch
// partial, then exhausted until im_loader_reset, the evaluation transform (resize to side x 256 / 224, center
// crop). threads: decoding threads (0: the cores). aug (training only; NULL: none): RandAugment and random
// erasing after the crop, and repeated augmentation: an epoch's positions j are example perm[j / repeat],
// copy j % repeat, drawn with the key epoch x repeat + copy (augment.h). Dies if the file is missing or
// damaged, or empty.
ImLoader *im_loader_open(const char *dir, const char *split, int B, int side, int train, uint64_t seed, int threads,
                         const ImAugment *aug);
// The next batch: *pix points at its [B][side * side * 3] 8-bit values (raster order, a pixel's channels
// together; the classifier's pixel input) in the loader's ring, valid until the next call of im_loader_next,
// _set_state, _reset or _close (no copy: the trainer reads the batch where it was decoded); labels[B] is
// copied. Returns the rows that hold an example (B in training; fewer at the end in order, 0 once exhausted;
// empty rows are zeros with label -1). Dies naming the file and the example when a JPEG does not decode.
int im_loader_next(ImLoader *l, const uint8_t **pix, int32_t *labels);
ExampleLoaderState im_loader_get_state(const ImLoader *l);
// Continues from a saved state (the seed must be the loader's); dies on an index past the split's end.
void im_loader_set_state(ImLoader *l, ExampleLoaderState s);
void im_loader_reset(ImLoader *l);           // back to epoch 0, example 0
const JpegSet *im_loader_set(const ImLoader *l);
int im_loader_threads(const ImLoader *l);
void im_loader_close(ImLoader *l);
// One example as the loader makes it (for tests and the benchmark): out[side][side][3], the training
// transform and then aug (when not NULL) drawn from (seed, epoch, i); the label, or -1 with the reason in err.
int32_t im_sample(const JpegSet *s, uint64_t i, int side, int train, uint64_t seed, uint64_t epoch, const ImAugment *aug,
                  uint8_t **buf, size_t *cap, uint8_t *out, char *err, size_t errlen);
// A hash of the classes (count and names) of a set: equal hashes, the same classes.
uint64_t im_classes_hash(const JpegSet *s);

#endif
