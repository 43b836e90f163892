// cuda/profile.cuh: the op profile of hgrn2 bench --profile, GPU time per step by model section and op.
#pragma once
#include "runtime.cuh"
#include <map>
#include <string>
#include <vector>
#include <algorithm>

// An event before every op; the time from one op's event to the next is charged to the op, by section ("mixer",
// "classifier", ...) and name. Launch gaps count with the op before.
//
// An op may also state its work (PROF_COST): the flops of its arithmetic and the bytes it must move at the least
// (each input read once, each output written once, in the formats they are stored in), so that the profile shows
// the TFLOP/s and TB/s each op achieves. Flops count a multiply-add as 2; the chunked token mixer's are its matrix
// products' (what the tensor cores do), its backward's twice its forward's. Only the op that was marked states
// its cost: an op that runs another inside it (a fallback path) is not charged twice.
struct ProfMark { const char *section, *op; cudaEvent_t ev; double flops, bytes; bool costed; };
static std::vector<ProfMark> g_marks;
static size_t g_nmarks = 0;
struct ProfSum { double ms = 0; long calls = 0; double flops = 0, bytes = 0; long costed = 0; };
static std::map<std::string, ProfSum> g_prof;

// fn: the caller's __func__, cuda_<op>; it counts only when <op> is the op marked last
static void prof_cost(const char *fn, double flops, double bytes) {
    if (!g_nmarks) return;   // not profiling (or between steps)
    ProfMark &m = g_marks[g_nmarks - 1];
    if (m.costed || strncmp(fn, "cuda_", 5) || strcmp(fn + 5, m.op)) return;
    m.flops = flops;
    m.bytes = bytes;
    m.costed = true;
}
#define PROF_COST(flops, bytes) prof_cost(__func__, (double)(flops), (double)(bytes))
// bytes of an operand value (bf16 or fp32) and of a weight as the products read it (its bf16 copy in bf16)
static double prof_os(void) { return opnd_bf16() ? 2 : 4; }
#define prof_ws prof_os

extern "C" void cuda_prof_mark(const char *section, const char *op) {
    if (g_nmarks == g_marks.size()) {
        ProfMark m = {section, op, NULL};
        CUDA_CHECK(cudaEventCreate(&m.ev));
        g_marks.push_back(m);
    }
    g_marks[g_nmarks].section = section;
    g_marks[g_nmarks].op = op;
    g_marks[g_nmarks].flops = g_marks[g_nmarks].bytes = 0;
    g_marks[g_nmarks].costed = false;
    CUDA_CHECK(cudaEventRecord(g_marks[g_nmarks].ev, g_stream));
    g_nmarks++;
}

extern "C" void cuda_prof_step(void) {
    if (!g_nmarks) return;
    cuda_prof_mark("", "");
    CUDA_CHECK(cudaEventSynchronize(g_marks[g_nmarks - 1].ev));
    for (size_t i = 0; i + 1 < g_nmarks; i++) {
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, g_marks[i].ev, g_marks[i + 1].ev));
        ProfSum &p = g_prof[std::string(g_marks[i].section) + " / " + g_marks[i].op];
        p.ms += ms;
        p.calls++;
        if (g_marks[i].costed) {
            p.flops += g_marks[i].flops;
            p.bytes += g_marks[i].bytes;
            p.costed++;
        }
    }
    g_nmarks = 0;
}

extern "C" void cuda_prof_print(int steps) {
    std::vector<std::pair<std::string, ProfSum>> v(g_prof.begin(), g_prof.end());
    std::sort(v.begin(), v.end(), [](const auto &a, const auto &b) { return a.second.ms > b.second.ms; });
    double total = 0;
    for (auto &e : v) total += e.second.ms;
    printf("GPU time per step by section and op (%d steps; %.2f ms per step in all), with the work of the ops that\n"
           "state it: TFLOP/s of their arithmetic and TB/s of the bytes they must move at the least:\n",
           steps, total / steps);
    double cms = 0, cflops = 0, cbytes = 0;
    for (auto &e : v) {
        const ProfSum &p = e.second;
        printf("  %-34s %6.1f calls %9.3f ms %6.1f%%", e.first.c_str(), (double)p.calls / steps, p.ms / steps,
               100 * p.ms / (total > 0 ? total : 1));
        // TFLOP/s = flops per ms / 1e9, and likewise TB/s; three and four decimals, so that the small ops' work
        // survives a reading back (scripts/profile_floors.py multiplies these by the time)
        if (p.costed == p.calls && p.ms > 0) {
            if (p.flops > 0) printf(" %10.3f TFLOP/s", p.flops / p.ms / 1e9);
            else printf(" %18s", "");
            printf(" %7.4f TB/s", p.bytes / p.ms / 1e9);
            cms += p.ms;
            cflops += p.flops;
            cbytes += p.bytes;
        }
        printf("\n");
    }
    if (cms > 0)
        printf("  ops with a stated cost: %.1f%% of the time, %.1f GFLOP and %.2f GB a step, %.1f TFLOP/s and %.2f TB/s "
               "over their time\n", 100 * cms / total, cflops / steps / 1e9, cbytes / steps / 1e9, cflops / cms / 1e9,
               cbytes / cms / 1e9);
    g_prof.clear();   // the next profile starts afresh
}
