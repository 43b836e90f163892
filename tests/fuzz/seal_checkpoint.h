// tests/fuzz/seal_checkpoint.h: the seal both checkpoint harnesses (fuzz_checkpoint, fuzz_cls_checkpoint)
// give fuzz_write_sealed: the trailing 8 bytes become the checksum of every byte before them, computed with
// the loader's own hash (checkpoint.h), so that mutations reach the fields the checksum guards.
#ifndef HGRN2_FUZZ_SEAL_CHECKPOINT_H
#define HGRN2_FUZZ_SEAL_CHECKPOINT_H

#include "checkpoint.h"

static void seal_checkpoint(uint8_t *b, size_t size) {
    if (size < 8) return;
    Hash h;
    hash_init(&h);
    hash_bytes(&h, b, size - 8);
    uint64_t sum = hash_final(&h);
    for (int i = 0; i < 8; i++) b[size - 8 + i] = (uint8_t)(sum >> (8 * i));
}

#endif
