// imagenet.c: `hgrn2 prepare --task imagenet` and the JPEG example files it writes: the ImageNet folder layout
// (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) or lists of "path label" lines; every image decoded, shrunk so its
// short side is at most --short-side (antialiased bicubic), re-encoded and stored with its label. Decoding
// runs on threads, a chunk of images at a time, and the chunk is written in the input's order, so the files
// do not depend on the thread count. The format and the policies: docs/imagenet.md.
#define _GNU_SOURCE
#include <fcntl.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "imagenet.h"
#include "jpeg.h"
#include "tokenizer.h"

#define INPUT_FILE_MAX (256u << 20)   // bytes of one input image: larger files are skipped as unreadable
#define LIST_LINE_MAX 65536           // bytes of one list line
#define CHUNK_PER_THREAD 16           // images per thread decoded before the chunk is written

static const char *const SPLITS[2] = {"train", "val"};

// ----------------------------------------------------------------------------------------------------------
// The header (docs/imagenet.md): little-endian, 64 bytes.

typedef struct {
    uint32_t version, classes, names_len, short_side;
    uint64_t images, index_offset, checksum;
} JpegsHeader;

static void header_encode(const JpegsHeader *h, uint8_t out[JPEGS_HEADER_BYTES]) {
    memset(out, 0, JPEGS_HEADER_BYTES);
    memcpy(out, JPEGS_MAGIC, 8);
    le_put_u32(out + 8, h->version);
    le_put_u32(out + 12, h->classes);
    le_put_u32(out + 16, h->names_len);
    le_put_u32(out + 20, h->short_side);
    le_put_u64(out + 24, h->images);
    le_put_u64(out + 32, h->index_offset);
    // 40..55 reserved, 0
    le_put_u64(out + 56, h->checksum);
}

static uint64_t header_checksum(const uint8_t hdr[JPEGS_HEADER_BYTES], const char *names, size_t names_len,
                                const uint8_t *index, uint64_t images) {
    uint64_t c = data_fnv1a(DATA_FNV_INIT, hdr, 56);
    c = data_fnv1a(c, names, names_len);
    return data_fnv1a(c, index, (size_t)(images * JPEGS_INDEX_ENTRY_BYTES));
}

// ----------------------------------------------------------------------------------------------------------
// The writer: placeholder header, class names, JPEG records as they come, the index at the end, then the
// header rewritten with the counts and the checksum.

typedef struct {
    char *final, *part;
    FILE *f;
    JpegsHeader h;
    char *names;
    uint8_t *index;
    uint64_t cap, pos;
} JpegsWriter;

static void write_all(const void *p, size_t n, FILE *f, const char *path) {
    if (n && fwrite(p, 1, n, f) != n) die("writing %s failed: %s", path, strerror(errno));
}

static void writer_open(JpegsWriter *w, const char *dir, const char *split, uint32_t classes, const char *names,
                        int short_side) {
    memset(w, 0, sizeof *w);
    w->final = xasprintf("%s/%s" JPEGS_SUFFIX, dir, split);
    w->part = xasprintf("%s.part", w->final);
    w->names = xstrdup(names);
    w->h = (JpegsHeader){.version = JPEGS_VERSION, .classes = classes, .names_len = (uint32_t)strlen(names),
                         .short_side = (uint32_t)short_side};
    data_cleanup_add(w->part);
    w->f = data_create_file(w->part);
    uint8_t hdr[JPEGS_HEADER_BYTES] = {0};
    write_all(hdr, sizeof hdr, w->f, w->part);
    write_all(names, w->h.names_len, w->f, w->part);
    w->pos = JPEGS_HEADER_BYTES + w->h.names_len;
}

static void writer_add(JpegsWriter *w, const uint8_t *jpeg, size_t n, int32_t label) {
    if (n < 1 || n > JPEGS_RECORD_MAX || label < 0 || (uint32_t)label >= w->h.classes)
        die("%s: image %llu of %zu bytes with label %d (expected 1 to %u bytes, a label below %u)", w->part,
            (unsigned long long)w->h.images, n, label, JPEGS_RECORD_MAX, w->h.classes);
    write_all(jpeg, n, w->f, w->part);
    if (w->h.images == w->cap) w->index = xrealloc(w->index, (size_t)(w->cap = w->cap ? 2 * w->cap : 1024) * JPEGS_INDEX_ENTRY_BYTES);
    uint8_t *e = w->index + w->h.images * JPEGS_INDEX_ENTRY_BYTES;
    le_put_u64(e, w->pos);
    le_put_u32(e + 8, (uint32_t)n);
    le_put_u32(e + 12, (uint32_t)label);
    le_put_u64(e + 16, data_fnv1a(DATA_FNV_INIT, jpeg, n));
    w->h.images++;
    w->pos += n;
}

// Appends the index and the final header; the file stays under its .part name until writers_commit.
static void writer_finish(JpegsWriter *w) {
    w->h.index_offset = w->pos;
    write_all(w->index, (size_t)(w->h.images * JPEGS_INDEX_ENTRY_BYTES), w->f, w->part);
    uint8_t hdr[JPEGS_HEADER_BYTES];
    header_encode(&w->h, hdr);
    w->h.checksum = header_checksum(hdr, w->names, w->h.names_len, w->index, w->h.images);
    header_encode(&w->h, hdr);
    if (fseeko(w->f, 0, SEEK_SET) != 0) die("seeking in %s failed: %s", w->part, strerror(errno));
    write_all(hdr, sizeof hdr, w->f, w->part);
    data_close_file(w->f, w->part);
    w->f = NULL;
}

// Both splits renamed to their final names once both are complete.
static void writers_commit(JpegsWriter w[2]) {
    for (int s = 0; s < 2; s++) data_cleanup_add(w[s].final);
    for (int s = 0; s < 2; s++)
        if (rename(w[s].part, w[s].final) != 0) die("renaming %s to %s failed: %s", w[s].part, w[s].final, strerror(errno));
    data_fsync_parent(w[0].final);
    for (int s = 0; s < 2; s++) {
        data_cleanup_remove(w[s].final);
        data_cleanup_remove(w[s].part);
        free(w[s].final);
        free(w[s].part);
        free(w[s].names);
        free(w[s].index);
    }
}

// ----------------------------------------------------------------------------------------------------------
// The reader

struct JpegSet {
    char *path, *names;
    char **class_name;   // per class, into names; NULL without names
    int fd;
    JpegsHeader h;
    uint8_t *index;
};

JpegSet *jpeg_set_open_file(const char *path) {
    uint64_t size;
    int fd = data_open_regular(path, "JPEG example file", &size);
    if (size < JPEGS_HEADER_BYTES)
        die("%s: %llu bytes, shorter than the %d-byte header: not a JPEG example file, or truncated", path,
            (unsigned long long)size, JPEGS_HEADER_BYTES);
    uint8_t hdr[JPEGS_HEADER_BYTES];
    data_pread(fd, hdr, sizeof hdr, 0, path);
    if (memcmp(hdr, JPEGS_MAGIC, 8) != 0) die("%s: not a JPEG example file (bad magic, expected \"%s\")", path, JPEGS_MAGIC);
    JpegsHeader h = {.version = le_get_u32(hdr + 8), .classes = le_get_u32(hdr + 12), .names_len = le_get_u32(hdr + 16),
                     .short_side = le_get_u32(hdr + 20), .images = le_get_u64(hdr + 24),
                     .index_offset = le_get_u64(hdr + 32), .checksum = le_get_u64(hdr + 56)};
    if (h.version != JPEGS_VERSION)
        die("%s: JPEG example file version %u, this build reads version %d (prepare the data again)", path, h.version,
            JPEGS_VERSION);
    for (int i = 40; i < 56; i++)
        if (hdr[i]) die("%s: corrupted header: reserved byte %d is %u", path, i, hdr[i]);
    if (h.classes < 1 || h.classes > JPEGS_CLASSES_MAX) die("%s: corrupted header: %u classes (expected 1 to %u)", path, h.classes, JPEGS_CLASSES_MAX);
    if (h.names_len > JPEGS_NAMES_MAX || h.names_len > size - JPEGS_HEADER_BYTES)
        die("%s: corrupted header: %u bytes of class names in a file of %llu bytes", path, h.names_len, (unsigned long long)size);
    uint64_t data_start = JPEGS_HEADER_BYTES + (uint64_t)h.names_len;
    if (h.index_offset < data_start || h.index_offset > size || h.images > JPEGS_IMAGES_MAX ||
        (size - h.index_offset) / JPEGS_INDEX_ENTRY_BYTES != h.images || (size - h.index_offset) % JPEGS_INDEX_ENTRY_BYTES ||
        h.images > h.index_offset - data_start)
        die("%s: file is %llu bytes, but its header says %llu images with the index at byte %llu: the file is truncated or "
            "corrupted", path, (unsigned long long)size, (unsigned long long)h.images, (unsigned long long)h.index_offset);
    JpegSet *s = xcalloc(1, sizeof *s);
    s->path = xstrdup(path);
    s->fd = fd;
    s->h = h;
    s->names = xmalloc((size_t)h.names_len + 1);
    data_pread(fd, s->names, h.names_len, JPEGS_HEADER_BYTES, path);
    s->names[h.names_len] = 0;
    s->index = xmalloc((size_t)(h.images * JPEGS_INDEX_ENTRY_BYTES) + 1);
    data_pread(fd, s->index, (size_t)(h.images * JPEGS_INDEX_ENTRY_BYTES), h.index_offset, path);
    if (header_checksum(hdr, s->names, h.names_len, s->index, h.images) != h.checksum)
        die("%s: checksum mismatch in the header, class names or index: the file is corrupted", path);
    // The class names: none, or exactly one non-empty line per class.
    if (h.names_len) {
        if (memchr(s->names, 0, h.names_len) || s->names[h.names_len - 1] != '\n')
            die("%s: corrupted class names (a NUL byte, or no line end at the end)", path);
        s->class_name = xmalloc((size_t)h.classes * sizeof *s->class_name);
        char *p = s->names;
        for (uint32_t c = 0; c < h.classes; c++) {
            char *nl = p < s->names + h.names_len ? strchr(p, '\n') : NULL;
            if (!nl || nl == p) die("%s: corrupted class names: expected %u non-empty lines", path, h.classes);
            *nl = 0;
            s->class_name[c] = p;
            p = nl + 1;
        }
        if (p != s->names + h.names_len) die("%s: corrupted class names: more lines than the %u classes", path, h.classes);
    }
    // Every record: contiguous from the end of the names to the index, 1 to JPEGS_RECORD_MAX bytes, a label
    // below the classes.
    uint64_t expect = data_start;
    for (uint64_t i = 0; i < h.images; i++) {
        const uint8_t *e = s->index + i * JPEGS_INDEX_ENTRY_BYTES;
        uint64_t off = le_get_u64(e);
        uint32_t n = le_get_u32(e + 8), label = le_get_u32(e + 12);
        if (off != expect || n < 1 || n > JPEGS_RECORD_MAX || n > h.index_offset - off || label >= h.classes)
            die("%s: corrupted index: image %llu of %u bytes at byte %llu with label %u (expected byte %llu, 1 to %u bytes "
                "before the index at %llu, a label below %u)", path, (unsigned long long)i, n, (unsigned long long)off,
                label, (unsigned long long)expect, JPEGS_RECORD_MAX, (unsigned long long)h.index_offset, h.classes);
        expect = off + n;
    }
    if (expect != h.index_offset)
        die("%s: corrupted index: the images end at byte %llu, the index starts at %llu", path, (unsigned long long)expect,
            (unsigned long long)h.index_offset);
    return s;
}

JpegSet *jpeg_set_open(const char *dir, const char *split) {
    char *path = xasprintf("%s/%s" JPEGS_SUFFIX, dir, split);
    if (!file_exists(path)) die("%s not found: no %s split in %s (run hgrn2 prepare --task imagenet)", path, split, dir);
    JpegSet *s = jpeg_set_open_file(path);
    free(path);
    return s;
}

uint64_t jpeg_set_count(const JpegSet *s) { return s->h.images; }
uint32_t jpeg_set_classes(const JpegSet *s) { return s->h.classes; }
const char *jpeg_set_class_name(const JpegSet *s, uint32_t c) { return s->class_name && c < s->h.classes ? s->class_name[c] : NULL; }
const char *jpeg_set_path(const JpegSet *s) { return s->path; }

int32_t jpeg_set_read(const JpegSet *s, uint64_t i, uint8_t **buf, size_t *cap, size_t *len) {
    if (i >= s->h.images) die("%s: image %llu is past the end (%llu images)", s->path, (unsigned long long)i, (unsigned long long)s->h.images);
    const uint8_t *e = s->index + i * JPEGS_INDEX_ENTRY_BYTES;
    uint64_t off = le_get_u64(e);
    uint32_t n = le_get_u32(e + 8);
    if (n > *cap) *buf = xrealloc(*buf, *cap = n);
    data_pread(s->fd, *buf, n, off, s->path);
    if (data_fnv1a(DATA_FNV_INIT, *buf, n) != le_get_u64(e + 16))
        die("%s: image %llu (byte %llu): its bytes do not match the index's hash; the file is corrupted", s->path,
            (unsigned long long)i, (unsigned long long)off);
    *len = n;
    return (int32_t)le_get_u32(e + 12);
}

int32_t jpeg_set_sample(const JpegSet *s, uint64_t i, int train, uint64_t seed, uint64_t epoch, uint8_t *out, char *err,
                        size_t errlen) {
    uint8_t *buf = NULL, *rgb = NULL;
    size_t cap = 0, n = 0;
    int32_t label = jpeg_set_read(s, i, &buf, &cap, &n);
    int w, h;
    int rc = jpeg_decode_rgb(buf, n, &rgb, &w, &h, NULL, err, errlen);
    free(buf);
    if (rc != 0) return -1;
    if (train) image_train_transform(rgb, w, h, IMAGENET_SIDE, seed, epoch, i, out);
    else image_eval_transform(rgb, w, h, IMAGENET_RESIZE, IMAGENET_SIDE, out);
    free(rgb);
    return label;
}

void jpeg_set_close(JpegSet *s) {
    if (!s) return;
    close(s->fd);
    free(s->path);
    free(s->names);
    free(s->class_name);
    free(s->index);
    free(s);
}

// ----------------------------------------------------------------------------------------------------------
// The inputs: (path, label) pairs of each split

typedef struct {
    char **path;
    int32_t *label;
    size_t n, cap;
} Items;

static void items_add(Items *it, char *path, int32_t label) {
    if (it->n == it->cap) {
        it->cap = it->cap ? 2 * it->cap : 1024;
        it->path = xrealloc(it->path, it->cap * sizeof *it->path);
        it->label = xrealloc(it->label, it->cap * sizeof *it->label);
    }
    it->path[it->n] = path;
    it->label[it->n++] = label;
}

static void items_free(Items *it) {
    for (size_t i = 0; i < it->n; i++) free(it->path[i]);
    free(it->path);
    free(it->label);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_jpeg_suffix(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".jpg"));
}

// Folders (arg points to 1) or regular files named *.jpeg / *.jpg in any case (arg points to 0): dir_names'
// filter for list_dir.
static int keep_entry(const char *dir, const char *name, void *arg) {
    int dirs = *(const int *)arg;
    if (!dirs && !has_jpeg_suffix(name)) return 0;
    char *full = xasprintf("%s/%s", dir, name);
    struct stat st;
    int keep = stat(full, &st) == 0 && (dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
    free(full);
    return keep;
}

// The entries of dir, sorted by bytes: its folders (dirs = 1) or its regular files named *.jpeg / *.jpg in
// any case (dirs = 0); hidden names left out. *n their count.
static char **list_dir(const char *dir, int dirs, size_t *n) { return dir_names(dir, keep_entry, &dirs, n); }

// The folder layout: class c is the c-th of train's folders in byte order; val's folders must be among them.
// Returns the class names as text, one a line.
static char *scan_folders(const char *input, Items split[2], uint32_t *nclasses) {
    char *dir[2];
    for (int s = 0; s < 2; s++) {
        dir[s] = xasprintf("%s/%s", input, SPLITS[s]);
        if (!is_dir(dir[s]))
            die("%s is not a folder: the ImageNet layout is %s/train/<class>/*.JPEG and %s/val/<class>/*.JPEG (or give "
                "--train-list and --val-list)", dir[s], input, input);
    }
    size_t nc, nv;
    char **classes = list_dir(dir[0], 1, &nc), **val = list_dir(dir[1], 1, &nv);
    if (!nc) die("%s holds no class folders", dir[0]);
    if (nc > JPEGS_CLASSES_MAX) die("%s holds %zu class folders, more than %u", dir[0], nc, JPEGS_CLASSES_MAX);
    ByteBuf names = {0};
    for (size_t c = 0; c < nc; c++) {
        for (const char *p = classes[c]; *p; p++)
            if ((unsigned char)*p < 0x20) die("%s/%s: a class folder whose name holds a control byte", dir[0], classes[c]);
        bytebuf_append(&names, classes[c], strlen(classes[c]));
        bytebuf_append(&names, "\n", 1);
    }
    bytebuf_append(&names, "", 1);
    // val's folders that train lacks, the first five named
    size_t missing = 0;
    char list[600] = "";
    for (size_t v = 0; v < nv; v++)
        if (!bsearch(&val[v], classes, nc, sizeof *classes, cmp_names) && ++missing <= 5)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", missing > 1 ? ", " : "", val[v]);
    if (missing)
        die("%s has %zu class folder%s that %s lacks: %s%s", dir[1], missing, missing == 1 ? "" : "s", dir[0], list,
            missing > 5 ? ", ..." : "");
    for (int s = 0; s < 2; s++) {
        char **folders = s == 0 ? classes : val;
        size_t nf = s == 0 ? nc : nv;
        for (size_t f = 0; f < nf; f++) {
            size_t label = s == 0 ? f : (size_t)((char **)bsearch(&folders[f], classes, nc, sizeof *classes, cmp_names) - classes);
            char *cdir = xasprintf("%s/%s", dir[s], folders[f]);
            size_t nfiles;
            char **files = list_dir(cdir, 0, &nfiles);
            if (!nfiles) die("%s: a class folder without JPEG files (*.JPEG, *.jpg)", cdir);
            for (size_t k = 0; k < nfiles; k++) items_add(&split[s], xasprintf("%s/%s", cdir, files[k]), (int32_t)label);
            free_names(files, nfiles);
            free(cdir);
        }
    }
    free_names(classes, nc);
    free_names(val, nv);
    free(dir[0]);
    free(dir[1]);
    *nclasses = (uint32_t)nc;
    return (char *)names.data;
}

// A list file: one image a line, "path label"; the label is the last field (so a path may hold spaces), an
// integer in [0, classes); a relative path is taken from the list's folder. Blank lines are skipped; any other
// problem is fatal, naming the line.
static void read_list(const char *list, int classes, Items *it) {
    struct stat st;
    if (stat(list, &st) != 0) die("cannot read list %s: %s", list, strerror(errno));
    if (!S_ISREG(st.st_mode)) die("list %s is not a regular file", list);
    FILE *f = fopen(list, "r");
    if (!f) die("cannot open list %s: %s", list, strerror(errno));
    char *slash = strrchr(list, '/');
    char *base = slash ? xasprintf("%.*s", (int)(slash - list), list) : xstrdup(".");
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned long long lineno = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        if (n > LIST_LINE_MAX) die("%s:%llu: a line of %zu bytes (at most %d)", list, lineno, n, LIST_LINE_MAX);
        if (memchr(line, 0, n)) die("%s:%llu: a NUL byte in the line", list, lineno);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
        line[n] = 0;
        size_t b = 0;
        while (b < n && (line[b] == ' ' || line[b] == '\t')) b++;
        if (b == n) continue;
        char *sp = NULL;
        for (size_t k = n; k-- > b;)
            if (line[k] == ' ' || line[k] == '\t') { sp = line + k; break; }
        if (!sp) die("%s:%llu: no label: expected \"path label\"", list, lineno);
        const char *lab = sp + 1;
        char *end;
        errno = 0;
        long v = strtol(lab, &end, 10);
        if (*end || end == lab || errno || v < 0 || v >= classes)
            die("%s:%llu: label '%.40s' is not an integer in [0, %d) (--classes)", list, lineno, lab, classes);
        while (sp > line + b && (sp[-1] == ' ' || sp[-1] == '\t')) sp--;
        *sp = 0;
        const char *p = line + b;
        items_add(it, p[0] == '/' ? xstrdup(p) : xasprintf("%s/%s", base, p), (int32_t)v);
    }
    if (ferror(f)) die("reading list %s failed: %s", list, strerror(errno));
    fclose(f);
    free(line);
    free(base);
}

// ----------------------------------------------------------------------------------------------------------
// One image: read, decode, shrink, encode. Runs on any thread; the result goes back in r (nothing dies for a
// bad image).

typedef struct {
    uint8_t *jpeg;
    size_t n;
    uint64_t bytes_in;
    int warnings, ok;
    char err[256];
} Result;

static int read_file(const char *path, uint8_t **data, size_t *n, char *err, size_t errlen) {
    int64_t fsize;
    int fd = open_regular(path, &fsize, err, errlen);
    if (fd < 0) return -1;
    if ((uint64_t)fsize > INPUT_FILE_MAX) {
        snprintf(err, errlen, "%lld bytes, more than the %u this reads", (long long)fsize, INPUT_FILE_MAX);
        close(fd);
        return -1;
    }
    size_t size = (size_t)fsize, got = 0;
    uint8_t *p = xmalloc(size ? size : 1);
    while (got < size) {
        ssize_t r = read(fd, p + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            snprintf(err, errlen, "read failed: %s", r < 0 ? strerror(errno) : "the file shrank");
            free(p);
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    *data = p;
    *n = size;
    return 0;
}

static void process_one(const char *path, int short_side, int quality, Result *r) {
    memset(r, 0, sizeof *r);
    uint8_t *data = NULL, *rgb = NULL;
    size_t n = 0;
    if (read_file(path, &data, &n, r->err, sizeof r->err) != 0) return;
    r->bytes_in = n;
    int w, h;
    int rc = jpeg_decode_rgb(data, n, &rgb, &w, &h, &r->warnings, r->err, sizeof r->err);
    free(data);
    if (rc != 0) return;
    int s = w < h ? w : h;
    if (s > short_side) {
        int ow, oh;
        image_short_side(w, h, short_side, &ow, &oh);
        uint8_t *small = xmalloc((size_t)ow * oh * 3);
        image_resize(rgb, w, h, (ImageBox){0, 0, w, h}, small, ow, oh);
        free(rgb);
        rgb = small;
        w = ow;
        h = oh;
    }
    rc = jpeg_encode_rgb(rgb, w, h, quality, &r->jpeg, &r->n, r->err, sizeof r->err);
    free(rgb);
    if (rc == 0 && r->n > JPEGS_RECORD_MAX) {
        snprintf(r->err, sizeof r->err, "re-encoded to %zu bytes, more than the %u a record holds", r->n, JPEGS_RECORD_MAX);
        free(r->jpeg);
        r->jpeg = NULL;
        return;
    }
    r->ok = rc == 0;
}

// ----------------------------------------------------------------------------------------------------------
// The run

typedef struct {
    const ImagenetPrepareOptions *o;
    uint64_t written[2], failed[2], warnings, bytes_in, bytes_out, reported;
    double t0, last_print;
    int tty;
} Run;

static void progress(Run *r, const char *split, int final) {
    double t = now_s();
    if (final && !r->tty) return;
    if (!final && t - r->last_print < (r->tty ? 0.25 : 5.0)) return;
    r->last_print = t;
    double el = t - r->t0 > 1e-9 ? t - r->t0 : 1e-9;
    uint64_t n = r->written[0] + r->written[1] + r->failed[0] + r->failed[1];
    fprintf(stderr, "%sprepare: imagenet: %s, %llu images, %.1f MB read, %.1f images/s%s", r->tty ? "\r" : "", split,
            (unsigned long long)n, (double)r->bytes_in / 1e6, (double)n / el, r->tty ? "\x1b[K" : "\n");
    if (final && r->tty) fputc('\n', stderr);
}

static void run_split(Run *r, int s, const Items *it, JpegsWriter *w, int threads) {
    size_t chunk = (size_t)threads * CHUNK_PER_THREAD;
    Result *res = xmalloc(chunk * sizeof *res);
    const ImagenetPrepareOptions *o = r->o;
    for (size_t base = 0; base < it->n; base += chunk) {
        size_t m = it->n - base < chunk ? it->n - base : chunk;
        #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (size_t k = 0; k < m; k++) process_one(it->path[base + k], o->short_side, o->quality, &res[k]);
        for (size_t k = 0; k < m; k++) {
            Result *x = &res[k];
            r->bytes_in += x->bytes_in;
            if (x->ok) {
                writer_add(w, x->jpeg, x->n, it->label[base + k]);
                r->written[s]++;
                r->bytes_out += x->n;
                r->warnings += (uint64_t)x->warnings;
            } else {
                r->failed[s]++;
                if (++r->reported <= 5) fprintf(stderr, "hgrn2 prepare: warning: %s: %s; skipped\n", it->path[base + k], x->err);
            }
            free(x->jpeg);
        }
        progress(r, SPLITS[s], 0);
    }
    free(res);
}

int imagenet_prepare(const ImagenetPrepareOptions *o) {
    if (!jpeg_available())
        die("prepare: --task imagenet needs JPEG support, which this build lacks: install libjpeg62-turbo-dev (make "
            "setup) and rebuild");
    if (!o->out) die("prepare: --out is required");
    if (!o->input == !o->train_list || !o->train_list != !o->val_list)
        die("prepare: --task imagenet takes --input DIR (the folder layout) or --train-list and --val-list");
    if (o->short_side < 1 || o->short_side > JPEG_SIDE_MAX) die("prepare: --short-side %d is outside [1, %d]", o->short_side, JPEG_SIDE_MAX);
    if (o->quality < 1 || o->quality > 100) die("prepare: --quality %d is outside [1, 100]", o->quality);
    if (o->train_list && (o->classes < 1 || (uint32_t)o->classes > JPEGS_CLASSES_MAX))
        die("prepare: --classes %d is outside [1, %u]", o->classes, JPEGS_CLASSES_MAX);
    int threads = o->threads > 0 ? o->threads : omp_get_num_procs();
    if (threads < 1) threads = 1;
    for (int s = 0; s < 2; s++) {
        char *f = xasprintf("%s/%s" JPEGS_SUFFIX, o->out, SPLITS[s]);
        if (file_exists(f)) die("%s already holds JPEG example files (%s); remove them or choose another --out", o->out, f);
        free(f);
    }
    Items items[2] = {{0}};
    uint32_t nclasses;
    char *names;
    if (o->input) {
        if (!is_dir(o->input)) die("input folder %s is not a folder", o->input);
        names = scan_folders(o->input, items, &nclasses);
    } else {
        nclasses = (uint32_t)o->classes;
        names = xstrdup("");
        read_list(o->train_list, o->classes, &items[0]);
        read_list(o->val_list, o->classes, &items[1]);
    }
    if (!items[0].n) die("no training images: %s lists none", o->input ? o->input : o->train_list);
    mkdir_p(o->out);
    Run r = {.o = o, .tty = isatty(2)};
    r.t0 = r.last_print = now_s();
    JpegsWriter w[2];
    for (int s = 0; s < 2; s++) writer_open(&w[s], o->out, SPLITS[s], nclasses, names, o->short_side);
    for (int s = 0; s < 2; s++) run_split(&r, s, &items[s], &w[s], threads);
    if (!r.written[0]) die("no training images: none of the %zu in %s could be read", items[0].n, o->input ? o->input : o->train_list);
    for (int s = 0; s < 2; s++) writer_finish(&w[s]);
    writers_commit(w);
    progress(&r, "done", 1);
    uint64_t failed = r.failed[0] + r.failed[1];
    printf("prepare: imagenet: train %llu, val %llu images of %u classes (short side at most %d, JPEG quality %d); %llu "
           "unreadable image%s skipped, %llu decoder warning%s; %.1f MB read, %.1f MB written in %.1f s; wrote %s\n",
           (unsigned long long)r.written[0], (unsigned long long)r.written[1], nclasses, o->short_side, o->quality,
           (unsigned long long)failed, failed == 1 ? "" : "s", (unsigned long long)r.warnings, r.warnings == 1 ? "" : "s",
           (double)r.bytes_in / 1e6, (double)r.bytes_out / 1e6, now_s() - r.t0, o->out);
    fflush(stdout);
    free(names);
    items_free(&items[0]);
    items_free(&items[1]);
    return 0;
}
