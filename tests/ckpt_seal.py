# A classifier's checkpoint body followed by its checksum, as an honest writer would write it: the tests'
# checkpoint editors (tests/test_cls_run.sh, tests/test_imagenet.sh) change fields behind a recomputed checksum.
import struct
def write(dst, b):
    h, M = 0xcbf29ce484222325, (1 << 64) - 1
    def word(h, w):
        h = ((h ^ w) * 0x100000001b3) & M
        return h ^ (h >> 29)
    k = len(b) // 8 * 8
    for j in range(0, k, 8): h = word(h, struct.unpack_from('<Q', b, j)[0])
    if len(b) > k: h = word(h, int.from_bytes(b[k:], 'little') ^ ((len(b) - k) << 56))
    open(dst, 'wb').write(bytes(b) + struct.pack('<Q', h))
