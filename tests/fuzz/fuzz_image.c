// fuzz_image: the image decoders of the vision tasks. The first byte picks one, the rest is the file:
//   even: a JPEG (jpeg_decode_rgb, as ImageNet's loader decodes every training image), and when it decodes,
//         the evaluation and training transforms to a small side, as the loader applies them;
//   odd:  a PNG (png_read_gray, as prepare reads Pathfinder's images) at the two sides of the task, 32 and 128.
// A decoder must either refuse the bytes with a reason or return an image within its limits.
// See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "images.h"
#include "jpeg.h"

#define SIDE 24

static void fuzz_jpeg(const uint8_t *data, size_t size) {
    FUZZ_TRY {
        uint8_t *rgb = NULL;
        int w = 0, h = 0, warnings = 0;
        char err[300] = "";
        if (jpeg_decode_rgb(data, size, &rgb, &w, &h, &warnings, err, sizeof err) != 0) {
            if (rgb || !err[0]) abort();   // a refusal gives a reason and no pixels
        } else {
            if (!rgb || w < 1 || h < 1 || w > JPEG_SIDE_MAX || h > JPEG_SIDE_MAX || (uint64_t)w * h > JPEG_PIXELS_MAX ||
                warnings < 0)
                abort();
            uint8_t out[SIDE * SIDE * 3];
            image_eval_transform(rgb, w, h, SIDE + SIDE / 7, SIDE, out);
            image_train_transform(rgb, w, h, SIDE, (uint64_t)size, 3, (uint64_t)w * h, out);
            free(rgb);
        }
    } FUZZ_END;
}

static void fuzz_png(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("image.png", data, size);
    static uint8_t px[128 * 128];
    const int sides[2] = {32, 128};
    for (int k = 0; k < 2; k++) {
        int w = -1, h = -1;
        char err[300] = "";
        int rc = png_read_gray(path, sides[k], px, &w, &h, err, sizeof err);
        if (rc != 0 && rc != -1 && rc != -2) abort();
        if (rc != 0 && !err[0]) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] % 2 == 0) {
        if (jpeg_available()) fuzz_jpeg(data + 1, size - 1);
    } else {
        fuzz_png(data + 1, size - 1);
    }
    return 0;
}
