// loader.c: the prefetching loader: batches of token windows from a split, read ahead on a background thread.
// Its policies (random and sequential windows, resuming): docs/shards.md.
#define _GNU_SOURCE
#include <pthread.h>

#include "data.h"

// Positions address the concatenation of a split's shards, so windows may cross shard boundaries
// (prepare cuts shards at a token count, not at document ends, so the concatenation is the original
// stream). A background thread fills a small ring of batches in order; loader_set_state bumps a generation
// so that whatever the thread was preparing for the old position is thrown away.

#define LOADER_RING 4
#define LOADER_OPEN_MAX 16   // open shards kept by the background thread (a split may have thousands)

struct Loader {
    int B, T, random;
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
    int32_t *work;
    // shared, under mu
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t *ring[LOADER_RING];
    int ring_rows[LOADER_RING];
    uint64_t ring_pos[LOADER_RING];
    int head, count, stop;
    uint64_t gen, next_pos, seed;   // what the thread produces next (batch index or cursor) and with which seed
    LoaderState state;              // the consumer's position
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
        if (l->random) {
            loader_read(l, window_start(seed, pos, (uint64_t)r, l->ntokens - (uint64_t)l->T), W, row);
            rows++;
            continue;
        }
        uint64_t s = pos + (uint64_t)r * (uint64_t)l->T;
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
    return l->random ? pos + 1 : pos + (uint64_t)l->B * (uint64_t)l->T;
}

static void *loader_thread(void *arg) {
    Loader *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        if (l->count == LOADER_RING || (!l->random && seq_exhausted(l, l->next_pos))) {
            pthread_cond_wait(&l->cv, &l->mu);
            continue;
        }
        uint64_t gen = l->gen, pos = l->next_pos, seed = l->seed;
        pthread_mutex_unlock(&l->mu);
        int rows = loader_produce(l, pos, seed, l->work);
        pthread_mutex_lock(&l->mu);
        if (gen != l->gen) continue;   // the position was reset meanwhile
        int slot = (l->head + l->count) % LOADER_RING;
        memcpy(l->ring[slot], l->work, (size_t)l->B * ((size_t)l->T + 1) * sizeof(int32_t));
        l->ring_rows[slot] = rows;
        l->ring_pos[slot] = pos;
        l->count++;
        l->next_pos = loader_advance(l, pos);
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

Loader *loader_open(const char *dir, const char *split, int B, int T, int random, uint64_t seed) {
    if (B < 1 || T < 1 || (uint64_t)B * ((uint64_t)T + 1) > (1ull << 34))
        die("loader for %s/%s: batch %d x sequence length %d is out of range", dir, split, B, T);
    Loader *l = xcalloc(1, sizeof *l);
    l->B = B;
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
    l->work = xmalloc(batch * sizeof(int32_t));
    for (int k = 0; k < LOADER_RING; k++) l->ring[k] = xmalloc(batch * sizeof(int32_t));
    l->state.seed = l->seed = seed;
    if (pthread_mutex_init(&l->mu, NULL) || pthread_cond_init(&l->cv, NULL)) die("loader: cannot create a mutex");
    int e = pthread_create(&l->thread, NULL, loader_thread, l);
    if (e) die("loader: cannot start the prefetch thread: %s", strerror(e));
    return l;
}

int loader_next(Loader *l, int32_t *ids) {
    size_t batch = (size_t)l->B * ((size_t)l->T + 1);
    pthread_mutex_lock(&l->mu);
    if (!l->random && seq_exhausted(l, l->state.cursor)) {
        pthread_mutex_unlock(&l->mu);
        for (size_t k = 0; k < batch; k++) ids[k] = -1;
        return 0;
    }
    while (l->count == 0) pthread_cond_wait(&l->cv, &l->mu);
    int slot = l->head;
    uint64_t want = l->random ? l->state.batches : l->state.cursor;
    if (l->ring_pos[slot] != want) die("loader: internal error: batch at %llu, expected %llu", (unsigned long long)l->ring_pos[slot], (unsigned long long)want);
    memcpy(ids, l->ring[slot], batch * sizeof(int32_t));
    int rows = l->ring_rows[slot];
    l->head = (l->head + 1) % LOADER_RING;
    l->count--;
    l->state.batches++;
    if (!l->random) l->state.cursor = loader_advance(l, l->state.cursor);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return rows;
}

uint64_t loader_ntokens(const Loader *l) { return l->ntokens; }
uint32_t loader_vocab(const Loader *l) { return l->vocab; }
const char *loader_tokenizer(const Loader *l) { return l->tokenizer; }

LoaderState loader_get_state(const Loader *l) {
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    LoaderState s = l->state;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
    return s;
}

void loader_set_state(Loader *l, LoaderState s) {
    pthread_mutex_lock(&l->mu);
    l->state = s;
    l->seed = s.seed;
    l->next_pos = l->random ? s.batches : s.cursor;
    l->gen++;
    l->head = l->count = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void loader_reset(Loader *l) {
    LoaderState s = {.seed = l->state.seed};
    loader_set_state(l, s);
}

void loader_close(Loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    for (int k = 0; k < LOADER_OPEN_MAX; k++) shard_close(l->open[k]);
    for (int k = 0; k < LOADER_RING; k++) free(l->ring[k]);
    data_free_paths(l->paths);
    free(l->first);
    free(l->work);
    free(l->tokenizer);
    free(l);
}
