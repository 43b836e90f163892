// train.h: training: the hyperparameters, the learning-rate schedules, the step shared by train and bench,
// evaluation over a split, and the training run with its progress, checkpoints and stops.
#ifndef HGRN2_TRAIN_H
#define HGRN2_TRAIN_H

#include "common.h"
#include "model.h"

typedef enum { SCHED_COSINE, SCHED_INVSQRT, SCHED_CONSTANT } Sched;
extern const char *const SCHED_NAMES[3];     // indexed by Sched, as --schedule spells them

// The optimization settings of a run (checkpoints keep them, so a resumed run continues with the same).
typedef struct {
    int B, T, accum;
    int64_t steps;
    double lr, min_lr, wd, beta1, beta2, adam_eps, clip;
    int64_t warmup;
    int sched;
    uint64_t seed;
} Hyper;

// The learning rate of step `step` (from 1): a linear warmup, then the schedule.
double lr_at(const Hyper *h, int64_t step);

#endif
