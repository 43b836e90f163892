// cuda/nccl.cuh: the collectives of a run of several processes on GPUs (dist.c), over NCCL on the ops' stream.
// One communicator per process, one GPU each. The training step's collectives are in place on the device
// arrays of ZeRO-1 (model.h): the gradients reduce-scattered (in fp32, or through bf16 copies), the parameters
// all-gathered; small host values (losses, counts, the gradient norm) go through a device buffer, and the
// checkpoint's moments reach rank 0 by point-to-point copies, one part at a time.
#pragma once
#include <nccl.h>
#include "dense.cuh"

static_assert(sizeof(ncclUniqueId) == CUDA_NCCL_ID_BYTES, "NCCL's unique id changed size");

#define NCCL_CHECK(call)                                                                                      \
    do {                                                                                                      \
        ncclResult_t r_ = (call);                                                                             \
        if (r_ != ncclSuccess)                                                                                \
            die("NCCL error at %s:%d: %s (%s); NCCL_DEBUG=WARN says more", __FILE__, __LINE__,                \
                ncclGetErrorString(r_), #call);                                                               \
    } while (0)

static ncclComm_t g_comm = NULL;
static int g_comm_rank = 0, g_comm_world = 1;

extern "C" void cuda_nccl_unique_id(void *id) { NCCL_CHECK(ncclGetUniqueId((ncclUniqueId *)id)); }

extern "C" void cuda_nccl_init(const void *id, int rank, int world) {
    cuda_init();
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    NCCL_CHECK(ncclCommInitRank(&g_comm, world, uid, rank));
    g_comm_rank = rank;
    g_comm_world = world;
}

extern "C" void cuda_nccl_finish(void) {
    if (!g_comm) return;
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
    NCCL_CHECK(ncclCommDestroy(g_comm));
    g_comm = NULL;
}

extern "C" void cuda_nccl_allreduce_host(double *x, int n, int max) {
    if (n <= 0) return;
    double *d = (double *)scratch((size_t)n * sizeof(double));
    CUDA_CHECK(cudaMemcpyAsync(d, x, (size_t)n * sizeof(double), cudaMemcpyHostToDevice, g_stream));
    NCCL_CHECK(ncclAllReduce(d, d, (size_t)n, ncclFloat64, max ? ncclMax : ncclSum, g_comm, g_stream));
    CUDA_CHECK(cudaMemcpyAsync(x, d, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, g_stream));
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

__global__ void from_bf16_kernel(float *__restrict__ y, const bf16 *__restrict__ x, int64_t n) {
    GRID_STRIDE(i, n) y[i] = __bfloat162float(x[i]);
}

extern "C" void cuda_nccl_reduce_scatter(float *x, int64_t part, int bf16_wire) {
    if (part <= 0) return;
    const size_t n = (size_t)part;
    float *mine = x + (size_t)g_comm_rank * n;
    if (!bf16_wire) {   // in place: this rank's block of the input is where its result goes
        NCCL_CHECK(ncclReduceScatter(x, mine, n, ncclFloat32, ncclSum, g_comm, g_stream));
        return;
    }
    // bf16 on the wire: half the bytes, and sums rounded to bf16 on the way (--reduce-dtype bf16)
    bf16 *w = (bf16 *)scratch(n * g_comm_world * sizeof(bf16));
    to_bf16(w, x, part * g_comm_world);
    bf16 *wmine = w + (size_t)g_comm_rank * n;
    NCCL_CHECK(ncclReduceScatter(w, wmine, n, ncclBfloat16, ncclSum, g_comm, g_stream));
    from_bf16_kernel<<<blocks_for(part, 256), 256, 0, g_stream>>>(mine, wmine, part);
    LAUNCH_CHECK("from_bf16");
}

extern "C" void cuda_nccl_all_gather(float *x, int64_t part) {
    if (part <= 0) return;
    const size_t n = (size_t)part;
    NCCL_CHECK(ncclAllGather(x + (size_t)g_comm_rank * n, x, n, ncclFloat32, g_comm, g_stream));
    // the other ranks' parts were written behind the bf16 weight copies' back (dense.cuh): those copies go
    // stale, while the ones within this rank's part stay as its cuda_adamw left them
    w16_stale(x, (size_t)g_comm_rank * n * sizeof(float));
    w16_stale(x + (size_t)(g_comm_rank + 1) * n, (size_t)(g_comm_world - g_comm_rank - 1) * n * sizeof(float));
}

extern "C" void cuda_nccl_gather_host(const float *part_buf, int64_t part, float *all) {
    if (part <= 0) return;
    const size_t n = (size_t)part, bytes = n * sizeof(float);
    if (g_comm_rank != 0) {
        NCCL_CHECK(ncclSend(part_buf, n, ncclFloat32, 0, g_comm, g_stream));
        CUDA_CHECK(cudaStreamSynchronize(g_stream));
        return;
    }
    cuda_to_host(all, part_buf, bytes);
    float *staging = (float *)cuda_alloc(bytes, "a part of the AdamW moments on its way to the checkpoint");
    for (int r = 1; r < g_comm_world; r++) {
        NCCL_CHECK(ncclRecv(staging, n, ncclFloat32, r, g_comm, g_stream));
        cuda_to_host(all + (size_t)r * n, staging, bytes);
    }
    cuda_free(staging);
}
