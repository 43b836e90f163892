// cuda/attention_cudnn.cpp: causal attention on cuDNN's fused SDPA (flash attention on the tensor cores, bf16
// operands, fp32 softmax and accumulation), forward and backward, through the cuDNN frontend's graph API. Host
// code only (the host compiler builds it; the Makefile adds it when the frontend's headers and cuDNN are found).
// cuda/attention.cuh converts the fp32 tensors to the bf16 layouts of attention_cudnn.h and back, and decides
// when to come here.
//
// Graphs: Q, K, V are [B, H, T, hd] views of the qkv rows (strides {T 3D, hd, 3D, 1}: no transposes), O and dO of
// [B,T,D] rows ({T D, hd, D, 1}), dQ, dK, dV of a dqkv buffer laid out as qkv. The causal mask is the band
// right bound 0 with the diagonal at the top left (training has Tq = Tk, where top left and bottom right are the
// same mask; top left is the form every cuDNN 9 release takes). Scale 1/sqrt(hd) as cpu.c's. Stats: fp32
// [B,H,T,1], natural log (the frontend converts to base 2 only when asked, set_stats_use_log2), max + log sum
// exp of the scaled scores: the ops' lse. Their strides are first asked as our lse's [B,T,H] ({T H, 1, H, 1});
// a cuDNN that refuses them gets [B,H,T] and the caller transposes. The backward asks for cuDNN's deterministic
// algorithm (dQ without atomics), as every reduction of the backend is deterministic.
//
// Plans are built once per (forward or backward, B, T, H, hd) and kept in a table for the life of the process;
// a shape cuDNN does not take is kept as such too, so the choice of path is the same at every step. The
// workspace is one grow-only buffer. Every cuDNN or frontend error after the plan is known to be supported
// dies through die() with the frontend's message.
#include <cudnn.h>
#include <cudnn_frontend.h>
#include <cuda_runtime.h>
#include <math.h>
#include <memory>
#include <string>
#include <vector>

#include "../common.h"
#include "../cuda_ops.h"
#include "attention_cudnn.h"

namespace fe = cudnn_frontend;

enum { U_Q = 1, U_K, U_V, U_O, U_STATS, U_DO, U_DQ, U_DK, U_DV };

struct SdpaPlan {
    int bwd, B, T, H, hd;
    int ok, stats_bht;
    std::shared_ptr<fe::graph::Graph> graph;
    int64_t workspace;
};

static std::vector<SdpaPlan> g_plans;
static cudnnHandle_t g_cudnn = nullptr;
static void *g_ws = nullptr;
static int64_t g_ws_bytes = 0;

#define CUDNN_CHECK(call)                                                                                     \
    do {                                                                                                      \
        cudnnStatus_t s_ = (call);                                                                            \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                                       \
            die("cuDNN error at %s:%d: %s (%s)", __FILE__, __LINE__, cudnnGetErrorString(s_), #call);         \
    } while (0)

static void fe_check(fe::error_t e, const char *what, const SdpaPlan &p) {
    if (e.is_bad())
        die("cuDNN attention (%s, B %d T %d H %d hd %d): %s failed: %s", p.bwd ? "backward" : "forward", p.B, p.T,
            p.H, p.hd, what, e.get_message().c_str());
}

static std::shared_ptr<fe::graph::Tensor_attributes> rows(fe::graph::Graph &g, const char *name, int uid,
                                                          const SdpaPlan &p, int64_t ld) {
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim({p.B, p.H, p.T, p.hd})
                        .set_stride({(int64_t)p.T * ld, p.hd, ld, 1})
                        .set_data_type(fe::DataType_t::BFLOAT16));
}

static std::vector<int64_t> stats_stride(const SdpaPlan &p) {
    if (p.stats_bht) return {(int64_t)p.H * p.T, p.T, 1, 1};
    return {(int64_t)p.T * p.H, 1, p.H, 1};
}

// The graph of plan p (p.stats_bht says the stats' layout), up to its support check: an error message, or "" when
// cuDNN takes it.
static std::string sdpa_graph(SdpaPlan &p) {
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    const int64_t D = (int64_t)p.H * p.hd, ld = 3 * D;
    const float scale = (float)(1 / sqrt((double)p.hd));   // cpu.c's
    auto Q = rows(*g, "Q", U_Q, p, ld), K = rows(*g, "K", U_K, p, ld), V = rows(*g, "V", U_V, p, ld);
    if (!p.bwd) {
        auto opt = fe::graph::SDPA_attributes()
                       .set_name("causal_attention")
                       .set_generate_stats(true)
                       .set_attn_scale(scale)
                       .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                       .set_diagonal_band_right_bound(0);
        auto [O, Stats] = g->sdpa(Q, K, V, opt);
        O->set_output(true).set_uid(U_O).set_dim({p.B, p.H, p.T, p.hd}).set_stride({(int64_t)p.T * D, p.hd, D, 1})
            .set_data_type(fe::DataType_t::BFLOAT16);
        Stats->set_output(true).set_uid(U_STATS).set_dim({p.B, p.H, p.T, 1}).set_stride(stats_stride(p))
            .set_data_type(fe::DataType_t::FLOAT);
    } else {
        auto O = rows(*g, "O", U_O, p, D), dO = rows(*g, "dO", U_DO, p, D);
        auto Stats = g->tensor(fe::graph::Tensor_attributes()
                                   .set_name("Stats")
                                   .set_uid(U_STATS)
                                   .set_dim({p.B, p.H, p.T, 1})
                                   .set_stride(stats_stride(p))
                                   .set_data_type(fe::DataType_t::FLOAT));
        auto opt = fe::graph::SDPA_backward_attributes()
                       .set_name("causal_attention_backward")
                       .set_attn_scale(scale)
                       .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                       .set_diagonal_band_right_bound(0)
                       .set_deterministic_algorithm(true);
        auto grads = g->sdpa_backward(Q, K, V, O, dO, Stats, opt);   // dQ, dK, dV
        const int uids[3] = {U_DQ, U_DK, U_DV};
        for (int i = 0; i < 3; i++)
            grads[i]->set_output(true).set_uid(uids[i]).set_dim({p.B, p.H, p.T, p.hd})
                .set_stride({(int64_t)p.T * ld, p.hd, ld, 1}).set_data_type(fe::DataType_t::BFLOAT16);
    }
    fe::error_t e = g->validate();
    if (e.is_good()) e = g->build_operation_graph(g_cudnn);
    if (e.is_good()) e = g->create_execution_plans({fe::HeurMode_t::A});
    if (e.is_good()) e = g->check_support(g_cudnn);
    if (e.is_bad()) return e.get_message().empty() ? std::string("not supported") : e.get_message();
    fe_check(g->build_plans(g_cudnn), "build_plans", p);
    fe_check(g->get_workspace_size(p.workspace), "get_workspace_size", p);
    p.graph = g;
    return "";
}

extern "C" int cudnn_sdpa_plan(int bwd, int B, int T, int H, int hd, void *stream, int must, int stats_bht) {
    for (size_t i = 0; i < g_plans.size(); i++) {
        const SdpaPlan &p = g_plans[i];
        if (p.bwd == bwd && p.B == B && p.T == T && p.H == H && p.hd == hd && p.stats_bht == stats_bht) {
            if (!p.ok && must)
                die("cuDNN attention (%s, B %d T %d H %d hd %d) is not supported by this cuDNN (HGRN2_ATTENTION=cudnn "
                    "asks for it)", bwd ? "backward" : "forward", B, T, H, hd);
            return p.ok ? (int)i : -1;
        }
    }
    if (!g_cudnn) {
        CUDNN_CHECK(cudnnCreate(&g_cudnn));
        CUDNN_CHECK(cudnnSetStream(g_cudnn, (cudaStream_t)stream));
    }
    SdpaPlan p = {bwd, B, T, H, hd, 0, stats_bht, nullptr, 0};
    const std::string why = hd % 8 ? "the head width is not a multiple of 8" : sdpa_graph(p);
    p.ok = why.empty();
    if (!p.ok && must)
        die("cuDNN attention (%s, B %d T %d H %d hd %d) is not supported by this cuDNN (HGRN2_ATTENTION=cudnn asks "
            "for it): %s", bwd ? "backward" : "forward", B, T, H, hd, why.c_str());
    g_plans.push_back(p);
    return p.ok ? (int)g_plans.size() - 1 : -1;
}

static void *workspace(int64_t bytes) {
    if (bytes > g_ws_bytes) {
        cuda_free(g_ws);   // waits for the work queued on the stream
        g_ws = cuda_alloc((size_t)bytes, "cuDNN attention workspace");
        g_ws_bytes = bytes;
    }
    return g_ws;
}

static void run(const SdpaPlan &p, std::unordered_map<int64_t, void *> &ptrs) {
    void *ws = workspace(p.workspace);
    fe_check(p.graph->execute(g_cudnn, ptrs, ws), "execute", p);
}

static char *elems(const void *base, int64_t offset) { return (char *)base + 2 * offset; }   // bf16 elements

extern "C" void cudnn_sdpa_fwd(int plan, void *o, float *stats, const void *qkv) {
    const SdpaPlan &p = g_plans.at(plan);
    const int64_t D = (int64_t)p.H * p.hd;
    std::unordered_map<int64_t, void *> ptrs = {{U_Q, elems(qkv, 0)}, {U_K, elems(qkv, D)}, {U_V, elems(qkv, 2 * D)},
                                                {U_O, o}, {U_STATS, stats}};
    run(p, ptrs);
}

extern "C" void cudnn_sdpa_bwd(int plan, void *dqkv, const void *dout, const void *qkv, const void *o,
                               const float *stats) {
    const SdpaPlan &p = g_plans.at(plan);
    const int64_t D = (int64_t)p.H * p.hd;
    std::unordered_map<int64_t, void *> ptrs = {
        {U_Q, elems(qkv, 0)},       {U_K, elems(qkv, D)},      {U_V, elems(qkv, 2 * D)},   {U_O, (void *)o},
        {U_DO, (void *)dout},       {U_STATS, (void *)stats},  {U_DQ, elems(dqkv, 0)},     {U_DK, elems(dqkv, D)},
        {U_DV, elems(dqkv, 2 * D)}};
    run(p, ptrs);
}
