// cuda/profile.cuh: the op profile of hgrn2 bench --profile, GPU time per step by model section and op.
#pragma once
#include "runtime.cuh"
#include <map>
#include <string>
#include <vector>
#include <algorithm>

// An event before every op; the time from one op's event to the next is charged to the op, by section ("mixer",
// "classifier", ...) and name. Launch gaps count with the op before.
struct ProfMark { const char *section, *op; cudaEvent_t ev; };
static std::vector<ProfMark> g_marks;
static size_t g_nmarks = 0;
struct ProfSum { double ms = 0; long calls = 0; };
static std::map<std::string, ProfSum> g_prof;

extern "C" void cuda_prof_mark(const char *section, const char *op) {
    if (g_nmarks == g_marks.size()) {
        ProfMark m = {section, op, NULL};
        CUDA_CHECK(cudaEventCreate(&m.ev));
        g_marks.push_back(m);
    }
    g_marks[g_nmarks].section = section;
    g_marks[g_nmarks].op = op;
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
    }
    g_nmarks = 0;
}

extern "C" void cuda_prof_print(int steps) {
    std::vector<std::pair<std::string, ProfSum>> v(g_prof.begin(), g_prof.end());
    std::sort(v.begin(), v.end(), [](const auto &a, const auto &b) { return a.second.ms > b.second.ms; });
    double total = 0;
    for (auto &e : v) total += e.second.ms;
    printf("GPU time per step by section and op (%d steps; %.2f ms per step in all):\n", steps, total / steps);
    for (auto &e : v)
        printf("  %-34s %6.1f calls %9.3f ms %6.1f%%\n", e.first.c_str(), (double)e.second.calls / steps,
               e.second.ms / steps, 100 * e.second.ms / (total > 0 ? total : 1));
    g_prof.clear();   // the next profile starts afresh
}
