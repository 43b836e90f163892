// loader.c: the prefetching loader: batches of token windows from a split, read ahead on a background thread.
// Its policies (random and sequential windows, resuming): docs/shards.md. The read-ahead itself (Prefetch)
// serves the example loader of examples.c as well.
#define _GNU_SOURCE
#include <pthread.h>

#include "data.h"

// ----------------------------------------------------------------------------------------------------------
// Read-ahead: the thread produces the batch at `next` into its work slot outside the lock, then swaps that
// slot into the ring. A restart bumps a generation, so that a batch made for the old position is dropped.

#define PREFETCH_RING (PREFETCH_SLOTS - 1)

struct Prefetch {
    const char *name;
    PrefetchOps ops;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int slot[PREFETCH_RING];         // the ring: head, head + 1, ... (mod the ring) hold count batches
    PrefetchPos at[PREFETCH_RING];   // where each starts
    int work, head, count, stop;     // work: the slot the thread fills, never in the ring
    uint64_t gen;
    PrefetchPos next;                // what the thread produces next
};

static void *prefetch_thread(void *arg) {
    Prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (p->count == PREFETCH_RING || p->ops.done(p->ops.owner, p->next)) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        uint64_t gen = p->gen;
        PrefetchPos at = p->next;
        pthread_mutex_unlock(&p->mu);
        p->ops.produce(p->ops.owner, at, p->work);
        pthread_mutex_lock(&p->mu);
        if (gen != p->gen) continue;   // the position was reset meanwhile
        int k = (p->head + p->count) % PREFETCH_RING, t = p->slot[k];
        p->slot[k] = p->work;
        p->work = t;
        p->at[k] = at;
        p->count++;
        p->next = p->ops.advance(p->ops.owner, at);
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

Prefetch *prefetch_start(const char *name, const PrefetchOps *ops, PrefetchPos at) {
    Prefetch *p = xcalloc(1, sizeof *p);
    p->name = name;
    p->ops = *ops;
    for (int k = 0; k < PREFETCH_RING; k++) p->slot[k] = k;
    p->work = PREFETCH_RING;
    p->next = at;
    if (pthread_mutex_init(&p->mu, NULL) || pthread_cond_init(&p->cv, NULL)) die("%s: cannot create a mutex", name);
    int e = pthread_create(&p->thread, NULL, prefetch_thread, p);
    if (e) die("%s: cannot start the prefetch thread: %s", name, strerror(e));
    return p;
}

void prefetch_stop(Prefetch *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

void prefetch_lock(Prefetch *p) { pthread_mutex_lock(&p->mu); }
void prefetch_unlock(Prefetch *p) { pthread_mutex_unlock(&p->mu); }

int prefetch_head(Prefetch *p, PrefetchPos want) {
    while (p->count == 0) pthread_cond_wait(&p->cv, &p->mu);
    PrefetchPos at = p->at[p->head];
    if (at.epoch != want.epoch || at.pos != want.pos)
        die("%s: internal error: the next batch starts at epoch %llu, position %llu; expected %llu, %llu", p->name,
            (unsigned long long)at.epoch, (unsigned long long)at.pos, (unsigned long long)want.epoch,
            (unsigned long long)want.pos);
    return p->slot[p->head];
}

void prefetch_pop(Prefetch *p) {
    p->head = (p->head + 1) % PREFETCH_RING;
    p->count--;
    pthread_cond_broadcast(&p->cv);
}

void prefetch_get_state(const Prefetch *p, void *state) {
    Prefetch *q = (Prefetch *)p;   // the lock is not part of the value
    pthread_mutex_lock(&q->mu);
    memcpy(state, p->ops.state, p->ops.state_bytes);
    pthread_mutex_unlock(&q->mu);
}

void prefetch_set_state(Prefetch *p, const void *state, PrefetchPos at) {
    pthread_mutex_lock(&p->mu);
    memcpy(p->ops.state, state, p->ops.state_bytes);
    p->next = at;
    p->gen++;
    p->head = p->count = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

// ----------------------------------------------------------------------------------------------------------
// The loader.
//
// Positions address the concatenation of a split's shards, so windows may cross shard boundaries
// (prepare cuts shards at a token count, not at document ends, so the concatenation is the original
// stream). A Prefetch fills a small ring of batches in order; loader_set_state restarts it, so that whatever
// it was preparing for the old position is thrown away.

#define LOADER_OPEN_MAX 16   // open shards kept by the background thread (a split may have thousands)

struct Loader {
    int B, T, random;
    int B_all, row0;         // the batches are rows [row0, row0 + B) of batches of B_all rows
    uint32_t vocab;
    char *tokenizer;
    size_t nshards;
    char **paths;
    uint64_t *first;         // first[i]: global index of shard i's first token; first[nshards] = ntokens
    uint64_t ntokens;
    // owned by the background thread
    Shard *open[LOADER_OPEN_MAX];
    size_t open_idx[LOADER_OPEN_MAX];
    uint64_t open_used[LOADER_OPEN_MAX], use_clock;
    // the batches: slot k holds buf[k] with rows[k] rows of data
    int32_t *buf[PREFETCH_SLOTS];
    int rows[PREFETCH_SLOTS];
    Prefetch *pf;
    LoaderState state;       // the consumer's position, under the Prefetch's lock
};

static Shard *loader_shard(Loader *l, size_t i) {
    int slot = -1;
    for (int k = 0; k < LOADER_OPEN_MAX; k++)
        if (l->open[k] && l->open_idx[k] == i) { slot = k; break; }
    if (slot < 0) {
        slot = 0;
        for (int k = 0; k < LOADER_OPEN_MAX; k++) {
            if (!l->open[k]) { slot = k; break; }
            if (l->open_used[k] < l->open_used[slot]) slot = k;
        }
        shard_close(l->open[slot]);
        l->open[slot] = shard_open(l->paths[i]);
        l->open_idx[slot] = i;
        if (shard_ntokens(l->open[slot]) != l->first[i + 1] - l->first[i])
            die("%s changed while it was in use (%llu tokens, was %llu)", l->paths[i],
                (unsigned long long)shard_ntokens(l->open[slot]), (unsigned long long)(l->first[i + 1] - l->first[i]));
    }
    l->open_used[slot] = ++l->use_clock;
    return l->open[slot];
}

static void loader_read(Loader *l, uint64_t start, uint64_t n, int32_t *out) {
    // the last shard whose first token is <= start
    size_t lo = 0, hi = l->nshards;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (l->first[mid] <= start) lo = mid;
        else hi = mid;
    }
    for (size_t i = lo; n; i++) {
        uint64_t in = start - l->first[i], avail = l->first[i + 1] - start;
        uint64_t take = n < avail ? n : avail;
        if (take) shard_read(loader_shard(l, i), in, take, out);
        out += take;
        start += take;
        n -= take;
    }
}

// Window start of row `row` of batch `batch`: uniform over the N - T starts whose T+1 tokens fit.
static uint64_t window_start(uint64_t seed, uint64_t batch, uint64_t row, uint64_t nstarts) {
    uint64_t h = mix64(mix64(mix64(seed) ^ batch) ^ row);
    return (uint64_t)(((unsigned __int128)h * nstarts) >> 64);
}

static int seq_exhausted(const Loader *l, uint64_t cursor) { return l->ntokens < 2 || cursor >= l->ntokens - 1; }

// One batch at position pos (batch index or cursor) into out; returns the rows holding data.
static int loader_produce(Loader *l, uint64_t pos, uint64_t seed, int32_t *out) {
    size_t W = (size_t)l->T + 1;
    int rows = 0;
    for (int r = 0; r < l->B; r++) {
        int32_t *row = out + (size_t)r * W;
        const uint64_t g = (uint64_t)(l->row0 + r);   // the row in the whole batch
        if (l->random) {
            loader_read(l, window_start(seed, pos, g, l->ntokens - (uint64_t)l->T), W, row);
            rows++;
            continue;
        }
        uint64_t s = pos + g * (uint64_t)l->T;
        size_t n = 0;
        if (!seq_exhausted(l, s)) {
            n = l->ntokens - s < W ? (size_t)(l->ntokens - s) : W;
            loader_read(l, s, n, row);
            rows++;
        }
        for (size_t k = n; k < W; k++) row[k] = -1;
    }
    return rows;
}

static uint64_t loader_advance(const Loader *l, uint64_t pos) {
    return l->random ? pos + 1 : pos + (uint64_t)l->B_all * (uint64_t)l->T;
}

// The Prefetch's view: the position is a batch index (random) or a cursor (sequential); no epochs.
static int loader_done(void *owner, PrefetchPos at) {
    const Loader *l = owner;
    return !l->random && seq_exhausted(l, at.pos);
}
static void loader_fill(void *owner, PrefetchPos at, int slot) {
    Loader *l = owner;
    l->rows[slot] = loader_produce(l, at.pos, at.seed, l->buf[slot]);
}
static PrefetchPos loader_step(void *owner, PrefetchPos at) {
    at.pos = loader_advance(owner, at.pos);
    return at;
}
static PrefetchPos loader_at(const Loader *l, LoaderState s) {
    return (PrefetchPos){.pos = l->random ? s.batches : s.cursor, .seed = s.seed};
}

Loader *loader_open(const char *dir, const char *split, int B, int T, int random, uint64_t seed) {
    return loader_open_rows(dir, split, B, 0, B, T, random, seed);
}

Loader *loader_open_rows(const char *dir, const char *split, int B_all, int row0, int B, int T, int random,
                         uint64_t seed) {
    if (B < 1 || T < 1 || (uint64_t)B * ((uint64_t)T + 1) > (1ull << 34))
        die("loader for %s/%s: batch %d x sequence length %d is out of range", dir, split, B, T);
    if (row0 < 0 || B_all < row0 + B) die("loader for %s/%s: rows %d to %d of batches of %d", dir, split, row0, row0 + B, B_all);
    Loader *l = xcalloc(1, sizeof *l);
    l->B = B;
    l->B_all = B_all;
    l->row0 = row0;
    l->T = T;
    l->random = random != 0;
    l->paths = data_split_paths(dir, split, &l->nshards);
    if (!l->nshards) die("%s holds no %s shards (expected %s/%s_000000.shard); run hgrn2 prepare", dir, split, dir, split);
    l->first = xmalloc((l->nshards + 1) * sizeof *l->first);
    // Every shard is opened once here so that a bad or mismatched one fails now, not hours into training.
    for (size_t i = 0; i < l->nshards; i++) {
        Shard *s = shard_open(l->paths[i]);
        if (i == 0) {
            l->vocab = shard_vocab(s);
            l->tokenizer = xstrdup(shard_tokenizer(s));
        } else if (shard_vocab(s) != l->vocab || strcmp(shard_tokenizer(s), l->tokenizer) != 0)
            die("%s has vocabulary %u and tokenizer \"%s\" but %s has %u and \"%s\"; all shards of a split must match",
                l->paths[i], shard_vocab(s), shard_tokenizer(s), l->paths[0], l->vocab, l->tokenizer);
        l->first[i] = l->ntokens;
        l->ntokens += shard_ntokens(s);
        shard_close(s);
    }
    l->first[l->nshards] = l->ntokens;
    if (l->random && l->ntokens < (uint64_t)T + 1)
        die("%s/%s holds %llu tokens, fewer than one window of --seq-len + 1 = %d", dir, split,
            (unsigned long long)l->ntokens, T + 1);
    size_t batch = (size_t)B * ((size_t)T + 1);
    for (int k = 0; k < PREFETCH_SLOTS; k++) l->buf[k] = xmalloc(batch * sizeof(int32_t));
    l->state.seed = seed;
    PrefetchOps ops = {l, &l->state, sizeof l->state, loader_done, loader_fill, loader_step};
    l->pf = prefetch_start("loader", &ops, loader_at(l, l->state));
    return l;
}

int loader_next(Loader *l, int32_t *ids) {
    size_t batch = (size_t)l->B * ((size_t)l->T + 1);
    prefetch_lock(l->pf);
    if (!l->random && seq_exhausted(l, l->state.cursor)) {
        prefetch_unlock(l->pf);
        for (size_t k = 0; k < batch; k++) ids[k] = -1;
        return 0;
    }
    int slot = prefetch_head(l->pf, loader_at(l, l->state));
    memcpy(ids, l->buf[slot], batch * sizeof(int32_t));
    int rows = l->rows[slot];
    prefetch_pop(l->pf);
    l->state.batches++;
    if (!l->random) l->state.cursor = loader_advance(l, l->state.cursor);
    prefetch_unlock(l->pf);
    return rows;
}

uint64_t loader_ntokens(const Loader *l) { return l->ntokens; }
uint32_t loader_vocab(const Loader *l) { return l->vocab; }
const char *loader_tokenizer(const Loader *l) { return l->tokenizer; }

LoaderState loader_get_state(const Loader *l) {
    LoaderState s;
    prefetch_get_state(l->pf, &s);
    return s;
}

void loader_set_state(Loader *l, LoaderState s) { prefetch_set_state(l->pf, &s, loader_at(l, s)); }

void loader_reset(Loader *l) {
    LoaderState s = {.seed = l->state.seed};
    loader_set_state(l, s);
}

void loader_close(Loader *l) {
    if (!l) return;
    prefetch_stop(l->pf);
    for (int k = 0; k < LOADER_OPEN_MAX; k++) shard_close(l->open[k]);
    for (int k = 0; k < PREFETCH_SLOTS; k++) free(l->buf[k]);
    data_free_paths(l->paths);
    free(l->first);
    free(l->tokenizer);
    free(l);
}
