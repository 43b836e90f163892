// train.c: training: the learning-rate schedules, the step shared by train and bench, evaluation over a
// split, the default corpus, and the training run with its progress, checkpoints and stops.
#include <math.h>

#include "train.h"

const char *const SCHED_NAMES[3] = {"cosine", "invsqrt", "constant"};

double lr_at(const Hyper *h, int64_t step) {
    if (h->warmup > 0 && step <= h->warmup) return h->lr * (double)step / (double)h->warmup;
    switch (h->sched) {
    case SCHED_INVSQRT: return h->lr * sqrt((double)(h->warmup > 0 ? h->warmup : 1) / (double)step);
    case SCHED_CONSTANT: return h->lr;
    default: {
        double span = (double)(h->steps - h->warmup);
        double t = span > 0 ? (double)(step - h->warmup) / span : 1.0;
        if (t > 1) t = 1;
        return h->min_lr + 0.5 * (h->lr - h->min_lr) * (1 + cos(M_PI * t));
    }
    }
}
