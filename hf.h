// hf.h: Hugging Face model files: safetensors (single or sharded with an index) and their tensors.
#ifndef HGRN2_HF_H
#define HGRN2_HF_H

#include "common.h"
#include "json.h"

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I32, ST_I64 } StDtype;

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[8];
    int64_t numel;
    uint64_t offset;        // absolute byte offset of the data in its file
    int file;               // index into StSet.paths
} StTensor;

typedef struct {
    StTensor *t;            // in the order of the files and their headers
    int n;
    int *by_name;           // indices into t, sorted by name (st_find)
    char **paths;
    int npaths;
} StSet;

// Opens DIR/model.safetensors, or DIR/model.safetensors.index.json and the shards it names.
// Validates every header (sizes, offsets, dtypes, names stored once) and dies naming the file on any problem.
StSet *st_open_dir(const char *dir);
// Opens one safetensors file.
StSet *st_open_file(const char *path);
const StTensor *st_find(const StSet *s, const char *name);
// Reads a tensor converted to float32 into out[numel] (integers too: exact below 2^24).
void st_read(const StSet *s, const StTensor *t, float *out);
void st_close(StSet *s);

// Writes a safetensors file from float32 tensors, stored as `dtype` (F32, F16 or BF16), via path.tmp and
// rename. shapes[i] has ndims[i] entries.
void st_write(const char *path, int n, const char *const *names, const float *const *data,
              const int64_t (*shapes)[8], const int *ndims, StDtype dtype);

float f16_to_f32(uint16_t h);     // (bf16's converters are common.h's)
uint16_t f32_to_f16(float f);

#endif
