// cpu_math.h: the CPU ops' scalar helpers (cpu.c, cpu_cls.c), in the precision of `real`: float, or double in
// the float64 build of the gradient tests (-DHGRN2_F64).
#ifndef HGRN2_CPU_MATH_H
#define HGRN2_CPU_MATH_H

#include <math.h>
#include "common.h"

#ifdef HGRN2_F64
#define rexp exp
#define rlog log
#define rlog1p log1p
#define rfabs fabs
#define rerfc erfc
#define rfma fma
#else
#define rexp expf
#define rlog logf
#define rlog1p log1pf
#define rfabs fabsf
#define rerfc erfcf
#define rfma fmaf
#endif

// sigmoid(x) and sigmoid(-x) = 1 - sigmoid(x), each to full relative precision (exp never overflows).
static inline void sigmoid2(real x, real *s, real *sn) {
    real e = rexp(-rfabs(x));
    real r = 1 / (1 + e);
    if (x >= 0) { *s = r; *sn = e * r; }
    else        { *s = e * r; *sn = r; }
}
static inline real sigmoid(real x) { real s, sn; sigmoid2(x, &s, &sn); return s; }

#endif
