// imagenet.h: `hgrn2 prepare --task imagenet` (the ImageNet folder layout or lists of "path label" lines into
// JPEG example files: each image resized so its short side is at most --short-side and re-encoded) and the
// reader the training side uses (an example's JPEG bytes and label, decoded and transformed as the recipe
// does). Code in imagenet.c; format and policies in docs/imagenet.md.
#ifndef HGRN2_IMAGENET_H
#define HGRN2_IMAGENET_H

#include "common.h"

// ---- the file: DIR/{train,val}.jpegs (docs/imagenet.md) ----
#define JPEGS_MAGIC "HGRN2JPG"
#define JPEGS_VERSION 1
#define JPEGS_HEADER_BYTES 64
#define JPEGS_INDEX_ENTRY_BYTES 24      // per image: u64 offset, u32 bytes, u32 label, u64 FNV-1a of the bytes
#define JPEGS_SUFFIX ".jpegs"
#define JPEGS_CLASSES_MAX (1u << 20)
#define JPEGS_NAMES_MAX (1u << 26)      // bytes of the class names
#define JPEGS_RECORD_MAX (64u << 20)    // bytes of one image
#define JPEGS_IMAGES_MAX (1ull << 32)

typedef struct {
    const char *input;        // folder mode: the folder of train/ and val/ (NULL in list mode)
    const char *train_list;   // list mode: files of "path label" lines
    const char *val_list;
    int classes;              // list mode: labels are in [0, classes)
    const char *out;          // output directory: created, must not hold .jpegs files already
    int short_side;           // images are resized so their short side is at most this (default 256)
    int quality;              // JPEG quality of the re-encoded images (default 90)
    int threads;              // decoding threads (0: all cores)
} ImagenetPrepareOptions;
// Writes OUT/train.jpegs and OUT/val.jpegs, progress on stderr, a summary line on stdout. Returns 0; a bad
// layout or list dies with one message, leaving no file under a final name. Images that fail to decode are
// counted, the first five reported, and skipped.
int imagenet_prepare(const ImagenetPrepareOptions *o);

// ---- reading ----
typedef struct JpegSet JpegSet;
// Opens DIR/<split>.jpegs (jpeg_set_open_file: any path): the header, the class names and the whole index
// are checked against the file's size before anything they size is allocated; dies naming the file.
JpegSet *jpeg_set_open(const char *dir, const char *split);
JpegSet *jpeg_set_open_file(const char *path);
uint64_t jpeg_set_count(const JpegSet *s);
uint32_t jpeg_set_classes(const JpegSet *s);
// Class c's name (the wnid of the folder layout); NULL for a set prepared from lists, which has no names.
const char *jpeg_set_class_name(const JpegSet *s, uint32_t c);
const char *jpeg_set_path(const JpegSet *s);
// Example i's label; its JPEG bytes into *buf (grown as needed, *cap its size), *len of them. Checks the
// bytes against the index's hash (dies naming the file and the example). Safe to call from several threads
// with their own buffers.
int32_t jpeg_set_read(const JpegSet *s, uint64_t i, uint8_t **buf, size_t *cap, size_t *len);
// Example i as the recipe feeds it: decoded, then out[side][side][3] (side IMAGENET_SIDE = 224) from the
// training transform (train = 1: random resized crop and flip drawn from (seed, epoch, i)) or the evaluation
// one (resize 256, center crop 224). Returns the label; -1 with the reason in err when the JPEG does not
// decode. Thread-safe as jpeg_set_read is.
int32_t jpeg_set_sample(const JpegSet *s, uint64_t i, int train, uint64_t seed, uint64_t epoch, uint8_t *out, char *err,
                        size_t errlen);
void jpeg_set_close(JpegSet *s);

#endif
