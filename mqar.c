// mqar.c: multi-query associative recall: the generator, the training batches, held-out accuracy.
// The layout of an example and the reasons for it are in docs/mqar.md.
#include <math.h>
#include <errno.h>

#include "mqar.h"
#include "dist.h"

// Zoology's exponent: slot j (from 0) of the query region is drawn with weight (j + 1)^(POWER_A - 1), so
// queries sit mostly near the start of the region, and some far from it.
#define POWER_A 0.01

const char *mqar_init(Mqar *g, int V, int T, int P, uint64_t seed) {
    static char msg[200];
    memset(g, 0, sizeof *g);
    if (V < 4) return "mqar needs a vocabulary of at least 4 (keys and values from its two halves)";
    if (P < 1) return "--kv-pairs must be at least 1";
    if (P > V / 2 - 1) {
        snprintf(msg, sizeof msg, "--kv-pairs %d needs %d distinct keys, more than the %d of a vocabulary of %d",
                 P, P, V / 2 - 1, V);
        return msg;
    }
    // the P pairs take 2P positions and every query a slot of two, so T >= 4P
    if ((int64_t)4 * P > T) {
        snprintf(msg, sizeof msg, "--kv-pairs %d is too many for --seq-len %d: %d pairs and their %d queries need a "
                 "length of at least %d", P, T, P, P, 4 * P);
        return msg;
    }
    g->V = V; g->T = T; g->P = P; g->seed = seed;
    g->S = (T - 2 * P) / 2;
    g->w = xmalloc((size_t)g->S * sizeof(double));
    for (int j = 0; j < g->S; j++) g->w[j] = pow(j + 1.0, POWER_A - 1);
    return NULL;
}

void mqar_free(Mqar *g) {
    free(g->w);
    memset(g, 0, sizeof *g);
}

int mqar_default_pairs(int T) {
    switch (T) {
    case 64: return 4;
    case 128: return 8;
    case 256: return 16;
    case 512: return 64;
    }
    return T / 16 > 1 ? T / 16 : 1;
}

// A uniform integer in [0, n), n <= 2^32: the high bits of a 64 x 32-bit product (no modulo bias to speak of).
static uint32_t below(uint64_t *s, uint32_t n) { return (uint32_t)(((splitmix64(s) >> 32) * n) >> 32); }

// Whether x is among the n values at p[0], p[stride], ...
static int among(const int32_t *p, int n, int stride, int32_t x) {
    for (int i = 0; i < n; i++) if (p[(int64_t)i * stride] == x) return 1;
    return 0;
}

void mqar_example(const Mqar *g, uint64_t index, int32_t *ids, int32_t *targets) {
    const int T = g->T, P = g->P, half = g->V / 2;
    // each example its own stream: a function of the seed and the index alone
    uint64_t s = mix64(mix64(g->seed) ^ index);
    for (int t = 0; t < T; t++) targets[t] = -1;
    // the pairs: P distinct keys from [1, V/2), P distinct values from [V/2, V), as k v k v ...
    for (int i = 0; i < P; i++) {
        int32_t k, v;
        do k = 1 + (int32_t)below(&s, (uint32_t)(half - 1)); while (among(ids, i, 2, k));
        do v = half + (int32_t)below(&s, (uint32_t)(g->V - half)); while (among(ids + 1, i, 2, v));
        ids[2 * i] = k;
        ids[2 * i + 1] = v;
    }
    // the rest is the filler token 0, which is never a key or a value ...
    for (int t = 2 * P; t < T; t++) ids[t] = MQAR_FILLER;
    // ... but for the queries: key i goes to the i-th of P distinct slots drawn by weight without
    // replacement; a slot j is the query position q = 2P + 2j, whose target is the value, and q + 1 (filler)
    double left = 0;
    for (int j = 0; j < g->S; j++) left += g->w[j];
    for (int i = 0; i < P; i++) {
        double u = rng_uniform(&s) * left, acc = 0;
        int pick = -1;
        for (int j = 0; j < g->S; j++) {
            if (targets[2 * P + 2 * j] >= 0) continue;       // taken
            pick = j;                                        // (the last free slot, should rounding run past)
            acc += g->w[j];
            if (u < acc) break;
        }
        left -= g->w[pick];
        ids[2 * P + 2 * pick] = ids[2 * i];
        targets[2 * P + 2 * pick] = ids[2 * i + 1];
    }
}

// A bijection of [0, n) picked by key: a 4-round Feistel network on the smallest domain of 2h bits that holds
// n, applied again until the value falls inside [0, n) (cycle walking keeps it a bijection; since the domain
// is under 4n, fewer than 4 passes on average). n <= 2^40, so h <= 20.
static uint64_t permute(uint64_t x, uint64_t n, uint64_t key) {
    if (n <= 1) return 0;
    int h = 1;
    while ((UINT64_C(1) << (2 * h)) < n) h++;
    const uint64_t mask = (UINT64_C(1) << h) - 1;
    do {
        uint64_t l = x >> h, r = x & mask;
        for (uint64_t k = 0; k < 4; k++) {
            const uint64_t f = mix64(key ^ (k << 56) ^ r) & mask;
            const uint64_t t = l ^ f;
            l = r;
            r = t;
        }
        x = l << h | r;
    } while (x >= n);
    return x;
}

uint64_t mqar_train_index(const Mqar *g, uint64_t i) {
    const uint64_t N = g->train_examples;
    if (!N) return i;
    // (the order's key is apart from the examples' streams, which start from mix64(mix64(seed) ^ index))
    return permute(i % N, N, mix64(mix64(g->seed ^ UINT64_C(0x6f72646572)) ^ (i / N)));
}

void mqar_spec(char *buf, size_t n, int P, uint64_t N) {
    if (N) snprintf(buf, n, "mqar:kv-pairs=%d,train-examples=%llu", P, (unsigned long long)N);
    else snprintf(buf, n, "mqar:kv-pairs=%d", P);
}

int mqar_parse(const char *spec, int *P, uint64_t *N) {
    int p, end = 0;
    if (sscanf(spec, "mqar:kv-pairs=%d%n", &p, &end) != 1 || p < 1) return 0;
    unsigned long long n = 0;
    if (spec[end]) {   // ",train-examples=N": digits only, 1 to the most a set may hold
        const char *s = spec + end, *key = ",train-examples=";
        if (strncmp(s, key, strlen(key))) return 0;
        s += strlen(key);
        if (*s < '0' || *s > '9') return 0;
        char *e;
        errno = 0;
        n = strtoull(s, &e, 10);
        if (*e || errno || n < 1 || n > MQAR_MAX_TRAIN_EXAMPLES) return 0;
    }
    *P = p;
    if (N) *N = n;
    return 1;
}

// ----------------------------------------------------------------------------------------------------------
// Training batches and evaluation

void mqar_batches_init(MqarBatches *b, const Mqar *g, int B, int row0, int rows, uint64_t next) {
    b->g = g;
    b->B = B;
    b->row0 = row0;
    b->rows = rows;
    b->next = next;
    b->ids = xmalloc((size_t)rows * g->T * sizeof(int32_t));
    b->tgt = xmalloc((size_t)rows * g->T * sizeof(int32_t));
}

void mqar_batches_free(MqarBatches *b) {
    free(b->ids);
    free(b->tgt);
    memset(b, 0, sizeof *b);
}

void mqar_batches_next(void *ctx, const int32_t **inp, const int32_t **tgt) {
    MqarBatches *b = ctx;
    const int T = b->g->T;
    for (int i = 0; i < b->rows; i++)
        mqar_example(b->g, mqar_train_index(b->g, b->next + (uint64_t)(b->row0 + i)), b->ids + (int64_t)i * T,
                     b->tgt + (int64_t)i * T);
    b->next += (uint64_t)b->B;
    *inp = b->ids;
    *tgt = b->tgt;
}

double mqar_evaluate(Model *m, Acts *a, const Mqar *g, int64_t n, double *acc) {
    const int B = a->B, T = a->T;
    const int64_t N = (int64_t)B * T;
    if (T != g->T) die("mqar_evaluate: activations for length %d, examples of length %d", T, g->T);
    int32_t *ids = xmalloc((size_t)N * sizeof(int32_t)), *tgt = xmalloc((size_t)N * sizeof(int32_t));
    int32_t *pred = xmalloc((size_t)N * sizeof(int32_t));
    double sum = 0;
    int64_t count = 0, right = 0;
    a->pred = pred;
    // this process's B examples of every batch of B x world
    for (int64_t first = (int64_t)g_dist.rank * B; first < n; first += (int64_t)B * g_dist.world) {
        for (int i = 0; i < B; i++) {
            int32_t *x = ids + (int64_t)i * T, *y = tgt + (int64_t)i * T;
            if (first + i < n) mqar_example(g, MQAR_HELD_OUT + (uint64_t)(first + i), x, y);
            else for (int t = 0; t < T; t++) { x[t] = 0; y[t] = -1; }     // past the set: no targets
        }
        int64_t c;
        sum += model_forward(m, a, ids, tgt, NULL, NULL, 0, 0, &c);
        count += c;
        for (int64_t r = 0; r < N; r++) right += tgt[r] >= 0 && pred[r] == tgt[r];
    }
    a->pred = NULL;
    free(ids); free(tgt); free(pred);
    if (g_dist.world > 1) {
        double tot[3] = {sum, (double)count, (double)right};
        dist_allreduce_host(tot, 3, DIST_SUM);
        sum = tot[0];
        count = (int64_t)tot[1];
        right = (int64_t)tot[2];
    }
    *acc = count ? (double)right / (double)count : NAN;
    return count ? sum / (double)count : NAN;
}

static double task_evaluate(void *ctx, Model *m, Acts *a, int64_t eval_batches, double *acc) {
    MqarTask *t = ctx;
    // a->B is this process's share of a batch of a->B x world
    return mqar_evaluate(m, a, t->g, eval_batches > 0 ? eval_batches * a->B * g_dist.world : MQAR_EVAL_EXAMPLES, acc);
}

void mqar_task_init(MqarTask *t, const Mqar *g, int B, int row0, int rows, uint64_t first_example) {
    t->g = g;
    mqar_batches_init(&t->batches, g, B, row0, rows, first_example);
    t->task = (GenTask){.batches = {mqar_batches_next, &t->batches}, .evaluate = task_evaluate, .ctx = t};
}

void mqar_task_free(MqarTask *t) { mqar_batches_free(&t->batches); }
