// imloader.c: the JPEG batch loader (imloader.h). The consumer assigns each batch of the ring its examples
// (their numbers and epochs, fixed by the position alone); workers claim rows one at a time, decode and
// transform them into the batch's row, and the consumer waits for the batch it needs. No busy waiting:
// condition variables, one for work, one for completed rows.
#include <pthread.h>
#include <unistd.h>

#include "imloader.h"
#include "checkpoint.h"
#include "jpeg.h"

typedef struct {
    uint64_t *ex, *ep;          // [B] each row's example and the epoch its draws are keyed by
    int32_t *label;             // [B]
    uint8_t *pix;               // [B][side][side][3]
    int rows;                   // rows with an example (0: exhausted, in order)
    int claimed, done;          // rows taken by workers, rows finished
} ImSlot;

struct ImLoader {
    JpegSet *set;
    int B, side, train, nthreads;
    uint64_t seed, n;
    ImAugment aug;              // training: what follows the crop (repeat 1 and nothing else when none)
    ImSlot slot[IM_RING];
    uint64_t *perm, perm_epoch; // the permutation of perm_epoch (training)
    ExampleLoaderState fill;    // the position of the next batch to assign
    ExampleLoaderState pos;     // the position after the batches handed out
    uint64_t next_seq;          // the number of the next batch handed out
    int held;                   // batch next_seq - 1 is still the consumer's: its slot is assigned again next time
    int exhausted;              // in order: the split ran out while assigning
    pthread_mutex_t mu;
    pthread_cond_t work, ready;
    int stop, busy;             // busy: rows being decoded right now
    char err[256];              // the first decode failure
    pthread_t *th;
};

static size_t img_bytes(const ImLoader *l) { return (size_t)l->side * l->side * 3; }

int32_t im_sample(const JpegSet *s, uint64_t i, int side, int train, uint64_t seed, uint64_t epoch, const ImAugment *aug,
                  uint8_t **buf, size_t *cap, uint8_t *out, char *err, size_t errlen) {
    size_t n = 0;
    int32_t label = jpeg_set_read(s, i, buf, cap, &n);
    uint8_t *rgb = NULL;
    int w, h;
    if (jpeg_decode_rgb(*buf, n, &rgb, &w, &h, NULL, err, errlen) != 0) return -1;
    // the evaluation resize keeps the recipe's ratio 256 / 224 at any side
    if (train) {
        image_train_transform(rgb, w, h, side, seed, epoch, i, out);
        aug_image(out, side, side, aug, seed, epoch, i);
    } else image_eval_transform(rgb, w, h, (side * IMAGENET_RESIZE + IMAGENET_SIDE / 2) / IMAGENET_SIDE, side, out);
    free(rgb);
    return label;
}

uint64_t im_classes_hash(const JpegSet *s) {
    Hash h;
    hash_init(&h);
    uint32_t c = jpeg_set_classes(s);
    hash_bytes(&h, &c, sizeof c);
    for (uint32_t i = 0; i < c; i++) {
        const char *name = jpeg_set_class_name(s, i);
        if (name) hash_bytes(&h, name, strlen(name) + 1);
    }
    return hash_final(&h);
}

// Assigns the batch at l->fill to slot k (under the lock, no worker on it).
static void assign(ImLoader *l, int k) {
    ImSlot *s = &l->slot[k];
    s->claimed = s->done = s->rows = 0;
    for (int r = 0; r < l->B; r++) {
        if (!l->train) {
            if (l->fill.index >= l->n) break;
            s->ex[r] = l->fill.index++;
            s->ep[r] = 0;
        } else {
            if (l->fill.epoch != l->perm_epoch) {
                example_permutation(l->seed, l->fill.epoch, l->n, l->perm);
                l->perm_epoch = l->fill.epoch;
            }
            // repeated augmentation: the permutation's entries each `repeat` times in a row, cut to the epoch
            const int R = l->aug.repeat;
            s->ex[r] = l->perm[aug_repeat_source(l->fill.index, R)];
            s->ep[r] = aug_repeat_key(l->fill.epoch, l->fill.index, R);
            if (++l->fill.index == l->n) { l->fill.index = 0; l->fill.epoch++; }
        }
        s->rows++;
    }
    memset(s->pix + (size_t)s->rows * img_bytes(l), 0, (size_t)(l->B - s->rows) * img_bytes(l));
    for (int r = s->rows; r < l->B; r++) s->label[r] = -1;
}

// The slot of batch number q.
static ImSlot *slot_of(ImLoader *l, uint64_t q) { return &l->slot[q % IM_RING]; }

static void *worker(void *arg) {
    ImLoader *l = arg;
    uint8_t *buf = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        // the oldest batch with an unclaimed row
        ImSlot *s = NULL;
        for (int i = 0; i < IM_RING && !s; i++) {
            ImSlot *t = slot_of(l, l->next_seq + (uint64_t)i);
            if (t->claimed < t->rows) s = t;
        }
        if (l->stop) break;
        if (!s) { pthread_cond_wait(&l->work, &l->mu); continue; }
        const int r = s->claimed++;
        const uint64_t ex = s->ex[r], ep = s->ep[r];
        l->busy++;
        pthread_mutex_unlock(&l->mu);
        char err[200] = "";
        int32_t label = im_sample(l->set, ex, l->side, l->train, l->seed, ep, l->train ? &l->aug : NULL, &buf, &cap,
                                  s->pix + (size_t)r * img_bytes(l), err, sizeof err);
        pthread_mutex_lock(&l->mu);
        l->busy--;
        if (label < 0 && !l->err[0])
            snprintf(l->err, sizeof l->err, "example %llu does not decode: %s", (unsigned long long)ex, err);
        s->label[r] = label;
        s->done++;
        pthread_cond_broadcast(&l->ready);
    }
    pthread_mutex_unlock(&l->mu);
    free(buf);
    return NULL;
}

// Drops the batches in the ring and refills it from position p (no rows in flight afterwards).
static void reposition(ImLoader *l, ExampleLoaderState p) {
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < IM_RING; i++) l->slot[i].rows = l->slot[i].claimed;   // nothing more to claim
    while (l->busy) pthread_cond_wait(&l->ready, &l->mu);
    l->fill = l->pos = p;
    l->next_seq = 0;
    l->held = 0;
    for (int i = 0; i < IM_RING; i++) assign(l, i);
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
}

ImLoader *im_loader_open(const char *dir, const char *split, int B, int side, int train, uint64_t seed, int threads,
                         const ImAugment *aug) {
    char *path = xasprintf("%s/%s" JPEGS_SUFFIX, dir, split);
    if (!file_exists(path)) die("no %s images in %s (%s is missing): run 'hgrn2 prepare --task imagenet' first", split, dir, path);
    ImLoader *l = xcalloc(1, sizeof *l);
    l->set = jpeg_set_open_file(path);
    free(path);
    l->n = jpeg_set_count(l->set);
    if (!l->n) die("%s holds no images", jpeg_set_path(l->set));
    if (B < 1 || side < IM_SIDE_MIN || side > 4096) die("internal error: image batches of %d x %d pixels x %d", side, side, B);
    l->B = B; l->side = side; l->train = train; l->seed = train ? seed : 0;
    l->aug = (ImAugment){.repeat = 1};
    if (train && aug) l->aug = *aug;
    if (l->aug.repeat < 1 || l->aug.repeat > AUG_REPEAT_MAX || !(l->aug.reprob >= 0 && l->aug.reprob <= 1))
        die("internal error: repeated augmentation x%d, erasing probability %g", l->aug.repeat, l->aug.reprob);
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    l->nthreads = threads < 1 ? 1 : threads > 256 ? 256 : threads;
    if (train) l->perm = xmalloc(l->n * sizeof(uint64_t));
    l->perm_epoch = UINT64_MAX;
    for (int i = 0; i < IM_RING; i++) {
        ImSlot *s = &l->slot[i];
        s->ex = xmalloc((size_t)B * sizeof(uint64_t));
        s->ep = xmalloc((size_t)B * sizeof(uint64_t));
        s->label = xmalloc((size_t)B * sizeof(int32_t));
        s->pix = xmalloc((size_t)B * img_bytes(l));
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->ready, NULL);
    l->fill = l->pos = (ExampleLoaderState){.seed = l->seed};
    for (int i = 0; i < IM_RING; i++) assign(l, i);
    l->th = xmalloc((size_t)l->nthreads * sizeof(pthread_t));
    for (int i = 0; i < l->nthreads; i++)
        if (pthread_create(&l->th[i], NULL, worker, l)) die("cannot start a loader thread");
    return l;
}

int im_loader_next(ImLoader *l, const uint8_t **pix, int32_t *labels) {
    pthread_mutex_lock(&l->mu);
    // the batch handed out last time is done with: its slot takes the batch IM_RING after it (every row of a
    // handed-out batch is claimed and done, so no worker touched it meanwhile)
    if (l->held) {
        assign(l, (int)((l->next_seq + IM_RING - 1) % IM_RING));
        l->held = 0;
        pthread_cond_broadcast(&l->work);
    }
    ImSlot *s = slot_of(l, l->next_seq);
    while (s->done < s->rows && !l->err[0]) pthread_cond_wait(&l->ready, &l->mu);
    if (l->err[0]) die("%s: %s", jpeg_set_path(l->set), l->err);
    const int rows = s->rows;
    *pix = s->pix;
    memcpy(labels, s->label, (size_t)l->B * sizeof(int32_t));
    // the position after this batch: its rows past the last one handed out
    if (l->train) {
        l->pos.index += (uint64_t)rows;
        while (l->pos.index >= l->n) { l->pos.index -= l->n; l->pos.epoch++; }
    } else l->pos.index += (uint64_t)rows;
    l->next_seq++;
    l->held = 1;
    pthread_mutex_unlock(&l->mu);
    return rows;
}

ExampleLoaderState im_loader_get_state(const ImLoader *l) { return l->pos; }

void im_loader_set_state(ImLoader *l, ExampleLoaderState s) {
    if (s.seed != l->seed || s.index >= l->n || s.reserved)
        die("%s: a loader position (seed %llu, index %llu) that does not fit its %llu images", jpeg_set_path(l->set),
            (unsigned long long)s.seed, (unsigned long long)s.index, (unsigned long long)l->n);
    reposition(l, s);
}

void im_loader_reset(ImLoader *l) { reposition(l, (ExampleLoaderState){.seed = l->seed}); }
const JpegSet *im_loader_set(const ImLoader *l) { return l->set; }
int im_loader_threads(const ImLoader *l) { return l->nthreads; }

void im_loader_close(ImLoader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nthreads; i++) pthread_join(l->th[i], NULL);
    for (int i = 0; i < IM_RING; i++) {
        free(l->slot[i].ex); free(l->slot[i].ep); free(l->slot[i].label); free(l->slot[i].pix);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->ready);
    jpeg_set_close(l->set);
    free(l->perm);
    free(l->th);
    free(l);
}
