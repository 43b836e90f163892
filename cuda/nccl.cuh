// cuda/nccl.cuh: the collectives of a run of several processes on GPUs (dist.c), over NCCL. One communicator
// per process, one GPU each. The training step's collectives are in place on the device arrays of ZeRO-1
// (model.h): the gradients summed into their parts bucket by bucket during the backward, on a stream of their
// own (in fp32, or through bf16 copies), the parameters all-gathered; small host values (losses, counts, the
// gradient norm) go through a device buffer, and the checkpoint's moments reach rank 0 by point-to-point
// copies, one part at a time. Everything but the gradients' buckets runs on the ops' stream, in their order.
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

// The gradients' buckets travel on a stream of their own, so the backward's kernels on g_stream go on
// meanwhile. Each bucket waits on g_ready, recorded on g_stream as it is sent (its gradients are final once
// the ops enqueued before have run); cuda_nccl_reduce_wait makes g_stream wait on g_done, recorded on the
// comm stream after the last bucket. One event of each serves every bucket: a wait holds the record that
// preceded it, whatever is recorded later. The comm stream has the highest priority, so its kernels (NCCL's,
// the bf16 conversions) start as SMs free up rather than behind the backward's queue.
static cudaStream_t g_comm_stream = NULL;
static cudaEvent_t g_ready = NULL, g_done = NULL;
// --reduce-dtype bf16: a bf16 copy of the whole gradient vector, each bucket converted into its own place in
// it, so no bucket overwrites another's still in flight; freed only with the comm stream idle.
static bf16 *g_wire = NULL;
static size_t g_wire_n = 0;

extern "C" void cuda_nccl_unique_id(void *id) { NCCL_CHECK(ncclGetUniqueId((ncclUniqueId *)id)); }

extern "C" void cuda_nccl_init(const void *id, int rank, int world) {
    cuda_init();
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    NCCL_CHECK(ncclCommInitRank(&g_comm, world, uid, rank));
    g_comm_rank = rank;
    g_comm_world = world;
    int least, greatest;
    CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    CUDA_CHECK(cudaStreamCreateWithPriority(&g_comm_stream, cudaStreamNonBlocking, greatest));
    CUDA_CHECK(cudaEventCreateWithFlags(&g_ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&g_done, cudaEventDisableTiming));
}

extern "C" void cuda_nccl_finish(void) {
    if (!g_comm) return;
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
    CUDA_CHECK(cudaStreamSynchronize(g_comm_stream));
    if (g_wire) cuda_free(g_wire);
    g_wire = NULL;
    g_wire_n = 0;
    NCCL_CHECK(ncclCommDestroy(g_comm));
    g_comm = NULL;
    CUDA_CHECK(cudaEventDestroy(g_ready));
    CUDA_CHECK(cudaEventDestroy(g_done));
    CUDA_CHECK(cudaStreamDestroy(g_comm_stream));
    g_comm_stream = NULL;
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

extern "C" void cuda_nccl_reduce_bucket(float *x, int64_t lo, int64_t hi, int64_t part, int bf16_wire) {
    if (hi <= lo || part <= 0) return;
    if (bf16_wire && g_wire_n < (size_t)part * g_comm_world) {   // the first bucket of the run
        if (g_wire) {
            CUDA_CHECK(cudaStreamSynchronize(g_comm_stream));
            cuda_free(g_wire);
        }
        g_wire_n = (size_t)part * g_comm_world;
        g_wire = (bf16 *)cuda_alloc(g_wire_n * sizeof(bf16), "bf16 copies of the gradients (--reduce-dtype bf16)");
    }
    // after the ops that made the bucket final
    CUDA_CHECK(cudaEventRecord(g_ready, g_stream));
    CUDA_CHECK(cudaStreamWaitEvent(g_comm_stream, g_ready, 0));
    const int64_t n = hi - lo;
    if (bf16_wire) {   // half the bytes on the wire, and sums rounded to bf16 on the way
        const int vec = al(x + lo, 16) && al(g_wire + lo, 8);
        to_bf16_kernel<<<blocks_for(vec ? n / 4 + 1 : n, 256), 256, 0, g_comm_stream>>>(g_wire + lo, x + lo, n, vec);
        LAUNCH_CHECK("to_bf16 (a bucket of gradients)");
    }
    // each piece within one rank's block, summed in place into that rank: one launch for the bucket
    NCCL_CHECK(ncclGroupStart());
    for (int64_t a = lo, b; a < hi; a = b) {
        const int owner = (int)(a / part);
        b = (int64_t)(owner + 1) * part < hi ? (int64_t)(owner + 1) * part : hi;
        if (bf16_wire)
            NCCL_CHECK(ncclReduce(g_wire + a, g_wire + a, (size_t)(b - a), ncclBfloat16, ncclSum, owner, g_comm, g_comm_stream));
        else
            NCCL_CHECK(ncclReduce(x + a, x + a, (size_t)(b - a), ncclFloat32, ncclSum, owner, g_comm, g_comm_stream));
    }
    NCCL_CHECK(ncclGroupEnd());
    if (bf16_wire) {   // this rank's piece of the sums, widened back into its gradients
        const int64_t mlo = (int64_t)g_comm_rank * part, mhi = mlo + part;
        const int64_t a = lo > mlo ? lo : mlo, b = hi < mhi ? hi : mhi;
        if (a < b) {
            from_bf16_kernel<<<blocks_for(b - a, 256), 256, 0, g_comm_stream>>>(x + a, g_wire + a, b - a);
            LAUNCH_CHECK("from_bf16 (a bucket of gradients)");
        }
    }
}

extern "C" void cuda_nccl_reduce_wait(void) {
    CUDA_CHECK(cudaEventRecord(g_done, g_comm_stream));
    CUDA_CHECK(cudaStreamWaitEvent(g_stream, g_done, 0));
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
