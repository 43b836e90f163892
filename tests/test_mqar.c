// test_mqar.c: the MQAR generator (mqar.c) and its held-out accuracy.
//  - every example: distinct keys from the lower half, distinct values from the upper half, each key queried
//    once after the pairs at a target that is its value, the filler everywhere else
//  - examples are a function of (seed, index): the same twice, different across indices and seeds
//  - held-out examples (indices from MQAR_HELD_OUT) never equal training ones; batches continue in order
//  - shapes it cannot make are refused; the checkpoint's name for the task reads back
//  - mqar_evaluate's loss and accuracy equal those computed from the model's logits
#include <math.h>
#include <omp.h>

#include "../mqar.h"
#include "check.h"

// The invariants of one example; returns the number of violations (the first printed, unless quiet).
static int check_example(const Mqar *g, const int32_t *ids, const int32_t *tgt, const char *what, int quiet) {
    const int T = g->T, P = g->P, half = g->V / 2;
    int bad = 0;
#define BAD(...) do { if (!bad && !quiet) { printf("FAIL: %s: ", what); printf(__VA_ARGS__); printf("\n"); } bad++; } while (0)
    for (int i = 0; i < P; i++) {
        int32_t k = ids[2 * i], v = ids[2 * i + 1];
        if (k < 1 || k >= half) BAD("key %d at %d is outside [1, %d)", k, 2 * i, half);
        if (v < half || v >= g->V) BAD("value %d at %d is outside [%d, %d)", v, 2 * i + 1, half, g->V);
        for (int j = 0; j < i; j++) {
            if (ids[2 * j] == k) BAD("key %d twice", k);
            if (ids[2 * j + 1] == v) BAD("value %d twice", v);
        }
        if (tgt[2 * i] >= 0 || tgt[2 * i + 1] >= 0) BAD("a target inside the pairs at %d", 2 * i);
    }
    int queries = 0, *seen = xcalloc((size_t)P, sizeof(int));
    for (int t = 2 * P; t < T; t++) {
        if (tgt[t] < 0) {
            // no target: the filler, unless it is the query's next position (also the filler)
            if (ids[t] != MQAR_FILLER) BAD("token %d at %d is neither a query nor the filler", ids[t], t);
            continue;
        }
        queries++;
        if ((t - 2 * P) % 2) BAD("a query at %d, off the slots 2P + 2j", t);
        int i = 0;
        while (i < P && ids[2 * i] != ids[t]) i++;
        if (i == P) { BAD("the query %d at %d is no key of the pairs", ids[t], t); continue; }
        if (tgt[t] != ids[2 * i + 1]) BAD("the target at %d is %d, the value of key %d is %d", t, tgt[t], ids[t], ids[2 * i + 1]);
        seen[i]++;
    }
    if (queries != P) BAD("%d queries, expected %d", queries, P);
    for (int i = 0; i < P; i++) if (seen[i] != 1) BAD("key %d is queried %d times", ids[2 * i], seen[i]);
#undef BAD
    free(seen);
    return bad;
}

static uint64_t hash_ids(const int32_t *ids, int T) {
    uint64_t h = 1469598103934665603ull;
    for (int t = 0; t < T; t++) h = mix64(h ^ (uint64_t)(uint32_t)ids[t]);
    return h;
}
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void invariants(int V, int T, int P, int n) {
    Mqar g;
    const char *bad = mqar_init(&g, V, T, P, 1234);
    CHECK(!bad, "mqar_init(V %d, T %d, P %d): %s", V, T, P, bad ? bad : "");
    if (bad) return;
    int32_t *ids = xmalloc((size_t)T * sizeof(int32_t)), *tgt = xmalloc((size_t)T * sizeof(int32_t));
    int32_t *ids2 = xmalloc((size_t)T * sizeof(int32_t)), *tgt2 = xmalloc((size_t)T * sizeof(int32_t));
    int64_t early = 0, late = 0;
    int failed = 0;
    char what[96];
    for (int e = 0; e < n && failed < 3; e++) {
        uint64_t index = e % 2 ? MQAR_HELD_OUT + (uint64_t)e : (uint64_t)e;
        snprintf(what, sizeof what, "V %d T %d P %d example %llu", V, T, P, (unsigned long long)index);
        mqar_example(&g, index, ids, tgt);
        failed += check_example(&g, ids, tgt, what, 0) > 0;
        // the queries' slots lean early (the power law): count those in the first and the second half
        for (int t = 2 * P; t < T; t++) if (tgt[t] >= 0) *((t - 2 * P) / 2 < g.S / 2 ? &early : &late) += 1;
        mqar_example(&g, index, ids2, tgt2);
        CHECK(!memcmp(ids, ids2, (size_t)T * 4) && !memcmp(tgt, tgt2, (size_t)T * 4),
              "%s: drawn twice, the example differs", what);
    }
    CHECK(!failed, "V %d T %d P %d: %d examples broke the invariants", V, T, P, failed);
    if (2 * P <= g.S)       // (with most slots taken, either half must hold many)
        CHECK(early > late, "V %d T %d P %d: %lld queries in the first half of the slots, %lld in the second",
              V, T, P, (long long)early, (long long)late);
    printf("V %5d T %4d P %3d: %d examples keep the invariants; queries in the first / second half of the slots %lld / %lld\n",
           V, T, P, n, (long long)early, (long long)late);
    free(ids); free(tgt); free(ids2); free(tgt2);
    mqar_free(&g);
}

// The checks above catch a broken example: a wrong target, a repeated key, a stray token.
static void checker_catches(void) {
    Mqar g;
    mqar_init(&g, 256, 32, 3, 5);
    int32_t ids[32], tgt[32];
    int caught = 0;
    for (int kind = 0; kind < 3; kind++) {
        mqar_example(&g, 0, ids, tgt);
        int q = 6;
        while (tgt[q] < 0) q++;
        if (kind == 0) tgt[q] = tgt[q] == ids[1] ? ids[3] : ids[1];      // another pair's value
        if (kind == 1) ids[2] = ids[0];                                  // key 0 twice
        if (kind == 2) ids[q + 1] = 5;                                   // a stray token
        caught += check_example(&g, ids, tgt, "a broken example", 1) > 0;
    }
    CHECK(caught == 3, "the checks caught %d of 3 broken examples", caught);
    mqar_free(&g);
}

// Training and held-out examples never coincide, and neither seed nor index repeats an example.
static void held_out(void) {
    const int V = MQAR_VOCAB, T = 64, P = 4, n = 3000;
    Mqar g, h;
    mqar_init(&g, V, T, P, 7);
    mqar_init(&h, V, T, P, 8);
    int32_t ids[64], tgt[64];
    uint64_t *train = xmalloc(n * sizeof(uint64_t)), *val = xmalloc(n * sizeof(uint64_t));
    for (int i = 0; i < n; i++) {
        mqar_example(&g, (uint64_t)i, ids, tgt);
        train[i] = hash_ids(ids, T);
        mqar_example(&g, MQAR_HELD_OUT + (uint64_t)i, ids, tgt);
        val[i] = hash_ids(ids, T);
    }
    qsort(train, n, sizeof(uint64_t), cmp_u64);
    qsort(val, n, sizeof(uint64_t), cmp_u64);
    int repeats = 0, shared = 0;
    for (int i = 1; i < n; i++) repeats += (train[i] == train[i - 1]) + (val[i] == val[i - 1]);
    for (int i = 0, j = 0; i < n && j < n;) {
        if (train[i] == val[j]) { shared++; i++; j++; }
        else if (train[i] < val[j]) i++;
        else j++;
    }
    CHECK(repeats == 0, "%d examples repeat within the first %d training or held-out ones", repeats, n);
    CHECK(shared == 0, "%d held-out examples equal training examples", shared);
    int32_t a[64], b[64];
    mqar_example(&g, 5, a, tgt);
    mqar_example(&h, 5, b, tgt);
    CHECK(memcmp(a, b, sizeof a), "seeds 7 and 8 draw the same example 5");
    printf("%d training and %d held-out examples: none repeats, none shared; another seed, other examples\n", n, n);
    free(train); free(val);
    mqar_free(&g); mqar_free(&h);
}

// Batches take the examples in index order; a source started at example k continues one started at 0; a
// process's rows of a batch (a run of several) are those rows of the whole batch.
static void batches(void) {
    Mqar g;
    mqar_init(&g, 512, 32, 3, 9);
    MqarBatches a, b, part;
    mqar_batches_init(&a, &g, 4, 0, 4, 0);
    mqar_batches_init(&b, &g, 4, 0, 4, 8);
    mqar_batches_init(&part, &g, 4, 1, 2, 8);
    const int32_t *ai, *at, *bi, *bt;
    int32_t want[32], wt[32];
    mqar_batches_next(&a, &ai, &at);
    mqar_example(&g, 2, want, wt);
    CHECK(!memcmp(ai + 2 * 32, want, sizeof want) && !memcmp(at + 2 * 32, wt, sizeof wt), "row 2 of batch 0 is not example 2");
    mqar_batches_next(&a, &ai, &at);
    mqar_batches_next(&a, &ai, &at);
    mqar_batches_next(&b, &bi, &bt);
    CHECK(!memcmp(ai, bi, 4 * 32 * 4) && !memcmp(at, bt, 4 * 32 * 4), "a source started at example 8 differs from the third batch");
    const int32_t *pi, *pt;
    mqar_batches_next(&part, &pi, &pt);
    mqar_batches_next(&part, &pi, &pt);
    mqar_batches_next(&b, &bi, &bt);
    CHECK(!memcmp(pi, bi + 32, 2 * 32 * 4) && !memcmp(pt, bt + 32, 2 * 32 * 4), "rows 1-2 of a batch differ from a part's");
    printf("batches: examples in index order, a source started later continues the same sequence, a part has its rows\n");
    mqar_batches_free(&a); mqar_batches_free(&b); mqar_batches_free(&part);
    mqar_free(&g);
}

// Shapes the generator cannot make, and the checkpoint's name of the task.
static void refusals(void) {
    Mqar g;
    struct { int V, T, P; const char *why; } bad[] = {
        {8192, 64, 17, "more pairs than T / 4"}, {8192, 15, 4, "T below 4P"}, {8192, 64, 0, "no pairs"},
        {3, 64, 1, "a vocabulary below 4"}, {16, 64, 8, "more keys than the lower half holds"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *msg = mqar_init(&g, bad[i].V, bad[i].T, bad[i].P, 1);
        CHECK(msg != NULL, "V %d T %d P %d (%s) was accepted", bad[i].V, bad[i].T, bad[i].P, bad[i].why);
        if (!msg) mqar_free(&g);
    }
    CHECK(!mqar_init(&g, 8192, 64, 16, 1), "T 64 with 16 pairs (T = 4P) was refused");
    mqar_free(&g);
    char spec[64];
    int P = 0;
    uint64_t N = 7;
    mqar_spec(spec, sizeof spec, 64, 0);
    CHECK(mqar_parse(spec, &P, &N) && P == 64 && N == 0, "'%s' reads back as %d pairs, %llu examples", spec, P,
          (unsigned long long)N);
    mqar_spec(spec, sizeof spec, 16, 100000);
    CHECK(!strcmp(spec, "mqar:kv-pairs=16,train-examples=100000") && mqar_parse(spec, &P, &N) && P == 16 &&
          N == 100000, "'%s' reads back as %d pairs, %llu examples", spec, P, (unsigned long long)N);
    CHECK(mqar_parse(spec, &P, NULL) && P == 16, "'%s' without asking for the examples", spec);
    const char *not_specs[] = {"data/bible", "mqar", "mqar:kv-pairs=", "mqar:kv-pairs=0", "mqar:kv-pairs=4x", "",
                               "mqar:kv-pairs=4,", "mqar:kv-pairs=4,train-examples=", "mqar:kv-pairs=4,train-examples=0",
                               "mqar:kv-pairs=4,train-examples=-5", "mqar:kv-pairs=4,train-examples=+5",
                               "mqar:kv-pairs=4,train-examples=12x", "mqar:kv-pairs=4,train-examples=1099511627777",
                               "mqar:kv-pairs=4,train-examples=99999999999999999999999", "mqar:kv-pairs=4,examples=5"};
    for (size_t i = 0; i < sizeof not_specs / sizeof not_specs[0]; i++)
        CHECK(!mqar_parse(not_specs[i], &P, &N), "'%s' read as an mqar run", not_specs[i]);
    CHECK(mqar_default_pairs(64) == 4 && mqar_default_pairs(128) == 8 && mqar_default_pairs(256) == 16 &&
          mqar_default_pairs(512) == 64 && mqar_default_pairs(1024) == 64, "the default pairs per length");
    printf("refused shapes and the task's name in a checkpoint\n");
}

// mqar_evaluate against the dense head's logits of a small random model, with a last batch only part full.
static void evaluate_matches_logits(void) {
    Config c = {.V = 64, .D = 16, .L = 2, .K = 16, .I = 0, .tie = 1, .lower_bound = 1, .eps = 1e-6};
    config_finish(&c);
    Model m;
    model_alloc(&m, &c);
    model_init(&m, 3);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] *= 30;    // logits far from uniform
    Mqar g;
    mqar_init(&g, c.V, 32, 4, 11);
    const int B = 4, T = 32, n = 10;
    Acts a;
    acts_alloc(&a, &c, B, T, 0);
    double acc, loss = mqar_evaluate(&m, &a, &g, n, &acc);
    Acts one;
    acts_alloc(&one, &c, 1, T, 0);
    real *logits = xmalloc((size_t)T * c.V * sizeof(real));
    int32_t ids[32], tgt[32];
    double sum = 0;
    int right = 0, count = 0;
    for (int e = 0; e < n; e++) {
        mqar_example(&g, MQAR_HELD_OUT + (uint64_t)e, ids, tgt);
        model_forward(&m, &one, ids, NULL, NULL, logits, 0, 0, NULL);
        for (int t = 0; t < T; t++) {
            if (tgt[t] < 0) continue;
            const real *l = logits + (int64_t)t * c.V;
            int best = 0;
            for (int v = 1; v < c.V; v++) if (l[v] > l[best]) best = v;
            double z = 0;
            for (int v = 0; v < c.V; v++) z += exp((double)l[v] - l[best]);
            sum += l[best] + log(z) - l[tgt[t]];
            right += best == tgt[t];
            count++;
        }
    }
    // float32 logits, summed in another order: a relative 1e-5 covers it
    CHECK(fabs(loss - sum / count) < 1e-5 * fabs(sum / count), "mqar_evaluate loss %.8f, from the logits %.8f", loss, sum / count);
    CHECK(acc == (double)right / count, "mqar_evaluate accuracy %.6f, from the logits %d / %d", acc, right, count);
    printf("mqar_evaluate over %d examples (batches of %d): loss %.5f and accuracy %.4f, as from the logits\n", n, B,
           loss, acc);
    free(logits);
    acts_free(&a); acts_free(&one);
    mqar_free(&g);
    model_free(&m);
}

// A fixed training set of N (--train-examples): every epoch of N takes each of the examples 0 .. N-1 once, in
// an order of its own that the seed decides; without a set the i-th example is example i; batches follow it.
static void fixed_set(void) {
    const uint64_t sizes[] = {1, 2, 3, 7, 64, 1000, 4099, 100000};
    Mqar g;
    mqar_init(&g, 512, 32, 3, 21);
    CHECK(mqar_train_index(&g, 12345) == 12345, "without a fixed set, example i is not the i-th");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const uint64_t N = sizes[s];
        g.train_examples = N;
        unsigned char *seen = calloc(N, 1);
        int64_t bad = 0, moved = 0, same_as_last = 0;
        uint64_t *first = malloc(N * sizeof *first);
        for (uint64_t e = 0; e < 3; e++) {
            memset(seen, 0, N);
            for (uint64_t j = 0; j < N; j++) {
                const uint64_t x = mqar_train_index(&g, e * N + j);
                if (x >= N || seen[x]++) bad++;
                if (x != j) moved++;
                if (e == 0) first[j] = x;
                else if (e == 1 && x == first[j]) same_as_last++;
                if (mqar_train_index(&g, e * N + j) != x) bad++;   // the same every time
            }
        }
        CHECK(!bad, "N %llu: an epoch is not a permutation of [0, N) (%lld faults)", (unsigned long long)N, (long long)bad);
        if (N >= 64) {
            CHECK(moved > (int64_t)N, "N %llu: the epochs keep the examples in index order", (unsigned long long)N);
            CHECK(same_as_last < (int64_t)N / 8, "N %llu: epochs 0 and 1 share %lld places of %llu", (unsigned long long)N,
                  (long long)same_as_last, (unsigned long long)N);
        }
        free(seen); free(first);
    }
    // another seed, another order; batches take the examples of the order
    Mqar h;
    mqar_init(&h, 512, 32, 3, 22);
    g.train_examples = h.train_examples = 1000;
    int same = 0;
    for (uint64_t j = 0; j < 1000; j++) same += mqar_train_index(&g, j) == mqar_train_index(&h, j);
    CHECK(same < 100, "seeds 21 and 22 put %d of 1000 examples in the same place", same);
    g.train_examples = 10;
    MqarBatches b;
    mqar_batches_init(&b, &g, 4, 0, 4, 8);   // the third batch of 4: examples 8 and 9 of epoch 0, 0 and 1 of epoch 1
    const int32_t *bi, *bt;
    mqar_batches_next(&b, &bi, &bt);
    int32_t want[32], wt[32];
    for (int r = 0; r < 4; r++) {
        mqar_example(&g, mqar_train_index(&g, (uint64_t)(8 + r)), want, wt);
        CHECK(!memcmp(bi + r * 32, want, sizeof want) && !memcmp(bt + r * 32, wt, sizeof wt),
              "row %d of the third batch is not the fixed set's example %d of the run", r, 8 + r);
    }
    mqar_batches_free(&b);
    mqar_free(&g); mqar_free(&h);
    printf("fixed training sets: each epoch a permutation of the set, its own order, batches in that order\n");
}

int main(void) {
    omp_set_num_threads(1);
    invariants(MQAR_VOCAB, 64, 4, 2000);
    invariants(MQAR_VOCAB, 128, 8, 1000);
    invariants(MQAR_VOCAB, 256, 16, 500);
    invariants(MQAR_VOCAB, 512, 64, 300);
    invariants(16, 33, 7, 300);              // an odd length; 7 of the 7 keys the lower half holds
    checker_catches();
    held_out();
    batches();
    fixed_set();
    refusals();
    evaluate_matches_logits();
    return check_summary("test_mqar");
}
