// cuda/embedding.cuh: the token embedding: a gather forward, a deterministic sort-and-sum backward.
#pragma once
#include "reduce.cuh"

__global__ void embed_fwd_kernel(float *__restrict__ x, const int32_t *__restrict__ ids, const float *__restrict__ E,
                                 int64_t N, int D) {
    GRID_STRIDE(i, N * D) {
        int64_t n = i / D;
        int c = (int)(i - n * D);
        x[i] = E[(int64_t)ids[n] * D + c];
    }
}

// Backward, deterministic: rows sharing an id must be summed in a fixed order. A stable LSD radix sort of the ids
// (a pass of 8 bits for each byte that ids below V can have: one for a vocabulary of up to 256, four at most)
// groups the rows of each id, in row order. The sorted
// positions are then cut into fixed chunks of EB_CH: an id whose rows lie inside one chunk is summed there and
// added to dE by that chunk; an id spanning chunks leaves per-chunk partial sums (P for the chunks it continues
// out of, Q for the chunk where it ends) that a second kernel adds to dE in chunk order.
#define RS_TILE 1024   // rows per radix-sort block (32 warps)
#define EB_CH 64       // sorted positions per reduction chunk

// per tile digit histogram: hist[d * ntiles + tile]
__global__ void rs_hist_kernel(int *hist, const int *__restrict__ keys, int64_t N, int shift, int ntiles) {
    __shared__ int cnt[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) cnt[i] = 0;
    __syncthreads();
    int64_t n = (int64_t)blockIdx.x * RS_TILE + threadIdx.x;
    if (n < N) atomicAdd(&cnt[(keys[n] >> shift) & 255], 1);   // integer: the count is order-independent
    __syncthreads();
    for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[(int64_t)d * ntiles + blockIdx.x] = cnt[d];
}

// In-place exclusive prefix sum of a[0..M) by one block (blockDim a multiple of 32, at most 1024).
__global__ void scan_exclusive_kernel(int *a, int64_t M) {
    __shared__ int wsum[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int carry = 0;
    for (int64_t base = 0; base < M; base += blockDim.x) {
        int64_t i = base + threadIdx.x;
        int x = i < M ? a[i] : 0;
        int s = x;   // inclusive scan within the warp
        for (int o = 1; o < 32; o <<= 1) {
            int y = __shfl_up_sync(0xffffffffu, s, o);
            if (lane >= o) s += y;
        }
        if (lane == 31) wsum[w] = s;
        __syncthreads();
        if (w == 0) {   // inclusive scan of the warp totals
            int ws = lane < nw ? wsum[lane] : 0;
            for (int o = 1; o < 32; o <<= 1) {
                int y = __shfl_up_sync(0xffffffffu, ws, o);
                if (lane >= o) ws += y;
            }
            if (lane < nw) wsum[lane] = ws;
        }
        __syncthreads();
        if (i < M) a[i] = carry + (w > 0 ? wsum[w - 1] : 0) + s - x;
        carry += wsum[nw - 1];
        __syncthreads();   // wsum is rewritten in the next round
    }
}

// Stable scatter of one radix pass. Rank among equal digits: within the warp from __match_any_sync, across the
// warps of the tile from per-warp counts, across tiles from the scanned histogram. vals_in NULL: the row index.
__global__ void rs_scatter_kernel(int *__restrict__ keys_out, int *__restrict__ vals_out,
                                  const int *__restrict__ keys_in, const int *__restrict__ vals_in,
                                  const int *__restrict__ offs, int64_t N, int shift, int ntiles) {
    __shared__ int wcnt[RS_TILE / 32][256];
    int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    for (int i = tid; i < (RS_TILE / 32) * 256; i += blockDim.x) (&wcnt[0][0])[i] = 0;
    __syncthreads();
    int64_t n = (int64_t)blockIdx.x * RS_TILE + tid;
    bool valid = n < N;
    int key = valid ? keys_in[n] : 0;
    int val = valid ? (vals_in ? vals_in[n] : (int)n) : 0;
    int d = valid ? (key >> shift) & 255 : 256;   // 256: a group of its own for the rows past N
    unsigned same = __match_any_sync(0xffffffffu, d);
    int rank = __popc(same & ((1u << lane) - 1));
    if (valid && rank == 0) wcnt[w][d] = __popc(same);
    __syncthreads();
    if (tid < 256) {   // exclusive prefix over the warps, per digit
        int acc = 0;
        for (int ww = 0; ww < RS_TILE / 32; ww++) {
            int c = wcnt[ww][tid];
            wcnt[ww][tid] = acc;
            acc += c;
        }
    }
    __syncthreads();
    if (valid) {
        int pos = offs[(int64_t)d * ntiles + blockIdx.x] + wcnt[w][d] + rank;
        keys_out[pos] = key;
        vals_out[pos] = val;
    }
}

// Pass 1 over the sorted rows: grid (chunk, column tile); each thread owns one column of one chunk and sums the
// rows of each id segment in order.
__global__ void embed_bwd_chunks_kernel(float *__restrict__ dE, float *__restrict__ P, float *__restrict__ Q,
                                        const float *__restrict__ dx, const int *__restrict__ sid,
                                        const int *__restrict__ srow, int64_t N, int D) {
    __shared__ int s_id[EB_CH], s_row[EB_CH];
    __shared__ int prev_id, next_id;
    int64_t j = blockIdx.x, p0 = j * EB_CH;
    int n = (int)(N - p0 < EB_CH ? N - p0 : EB_CH);
    for (int r = threadIdx.x; r < n; r += blockDim.x) { s_id[r] = sid[p0 + r]; s_row[r] = srow[p0 + r]; }
    if (threadIdx.x == 0) {
        prev_id = p0 > 0 ? sid[p0 - 1] : -1;
        next_id = p0 + n < N ? sid[p0 + n] : -1;
    }
    __syncthreads();
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= D) return;
    float acc = 0.f;
    int start = 0;
#pragma unroll 4
    for (int r = 0; r < n; r++) {
        acc += dx[(int64_t)s_row[r] * D + c];
        if (r == n - 1 || s_id[r + 1] != s_id[r]) {   // the segment of s_id[r] ends in this chunk at r
            int id = s_id[r];
            bool continued = start == 0 && id == prev_id;    // began in an earlier chunk
            bool continuing = r == n - 1 && id == next_id;   // goes on in the next chunk
            if (continuing) P[j * D + c] = acc;
            else if (continued) Q[j * D + c] = acc;
            else dE[(int64_t)id * D + c] += acc;             // this chunk holds all of the id's rows
            acc = 0.f;
            start = r + 1;
        }
    }
}

// Pass 2: the chunk where a multi-chunk segment ends adds P of its earlier chunks, in order, then its own Q.
__global__ void embed_bwd_merge_kernel(float *__restrict__ dE, const float *__restrict__ P,
                                       const float *__restrict__ Q, const int *__restrict__ sid, int64_t N, int D) {
    int64_t j = blockIdx.x, p0 = j * EB_CH;
    if (j == 0) return;
    int id = sid[p0];
    if (sid[p0 - 1] != id) return;   // this chunk's first segment starts here: nothing to merge
    int64_t plast = (p0 + EB_CH < N ? p0 + EB_CH : N) - 1;
    if (sid[plast] == id && plast + 1 < N && sid[plast + 1] == id) return;   // it goes on: a later chunk merges
    int64_t k = j - 1;   // chunks k..j-1 hold the earlier rows (each wrote P); find the first
    while (k > 0 && sid[k * EB_CH] == id && sid[k * EB_CH - 1] == id) k--;
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= D) return;
    float acc = dE[(int64_t)id * D + c];
    for (int64_t m = k; m < j; m++) acc += P[m * D + c];
    dE[(int64_t)id * D + c] = acc + Q[j * D + c];
}

// A vocabulary small enough for a table in shared memory (ListOps: 18 ids): the sort above leaves each id's rows
// in a segment of thousands, which the merge then walks one chunk at a time (0.93 ms of a ListOps step on an
// H200, against 0.056 ms for this path). Here a block takes EBS_ROWS consecutive rows and its
// 256 threads split as S = 256 / D row ranges x D columns: thread (s, c) adds column c of its range's rows, in
// row order, into its own table tab[s][id][c]; the block then writes P[block] = tab[0] + ... + tab[S-1], and a
// second kernel adds P's blocks into dE in block order. Every sum has a fixed order that depends on N, D and V
// alone, so the result is deterministic.
#define EBS_ROWS 1024
#define EBS_THREADS 256
#define EBS_SMEM (48 * 1024)
static inline int ebs_subs(int D) { return D <= EBS_THREADS ? EBS_THREADS / D : 0; }
// cuda_embed_small_table (the tests): -1 the table wherever it fits (the default), 0 never (always the sort).
static int g_embed_table = -1;
extern "C" void cuda_embed_small_table(int mode) { g_embed_table = mode; }
static inline bool embed_bwd_small_fits(int D, int64_t V) {
    if (g_embed_table == 0) return false;
    const int S = ebs_subs(D);   // S x D <= 256, so the product below cannot overflow for any V below 2^31
    return S > 0 && (int64_t)S * D * V * (int64_t)sizeof(float) <= EBS_SMEM;
}

__global__ void embed_bwd_small_kernel(float *__restrict__ P, const float *__restrict__ dx, const int *__restrict__ ids,
                                       int64_t N, int D, int V, int S) {
    extern __shared__ float tab[];   // [S][V][D]
    const int VD = V * D, tid = threadIdx.x;
    for (int i = tid; i < S * VD; i += blockDim.x) tab[i] = 0.f;
    __syncthreads();
    const int s = tid / D, c = tid - s * D;
    if (s < S) {
        const int per = (EBS_ROWS + S - 1) / S;
        int64_t r0 = (int64_t)blockIdx.x * EBS_ROWS + (int64_t)s * per, r1 = r0 + per;
        const int64_t end = (int64_t)blockIdx.x * EBS_ROWS + EBS_ROWS;
        if (r1 > end) r1 = end;
        if (r1 > N) r1 = N;
        float *t = tab + s * VD + c;
#pragma unroll 8
        for (int64_t r = r0; r < r1; r++) t[ids[r] * D] += dx[r * D + c];
    }
    __syncthreads();
    for (int i = tid; i < VD; i += blockDim.x) {
        float acc = tab[i];
        for (int k = 1; k < S; k++) acc += tab[k * VD + i];
        P[(int64_t)blockIdx.x * VD + i] = acc;
    }
}

__global__ void embed_bwd_small_merge_kernel(float *__restrict__ dE, const float *__restrict__ P, int64_t nblk, int VD) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= VD) return;
    float acc = 0.f;
#pragma unroll 8
    for (int64_t b = 0; b < nblk; b++) acc += P[b * VD + i];
    dE[i] += acc;
}

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
extern "C" void cuda_embed_fwd(float *x, const int32_t *ids, const float *E, int64_t N, int D) {
    if (N <= 0 || D <= 0) return;
    PROF_COST(0, 4.0 * N + 8.0 * N * D);
    embed_fwd_kernel<<<blocks_for(N * D, 256), 256, 0, g_stream>>>(x, ids, E, N, D);
    LAUNCH_CHECK("embed_fwd");
}

extern "C" void cuda_embed_bwd(float *dE, const float *dx, const int32_t *ids, int64_t N, int D, int64_t V) {
    if (N <= 0 || D <= 0) return;
    // ids and dx once; at most min(N, V) rows of dE read and written
    PROF_COST(N * (double)D, 4.0 * N + 4.0 * N * D + 8.0 * (double)(N < V ? N : V) * D);
    if (N > INT_MAX / 2) die("embedding backward: %lld rows is too many; reduce --batch or --seq-len", (long long)N);
    if (embed_bwd_small_fits(D, V)) {
        const int S = ebs_subs(D), VD = (int)V * D;
        const int64_t nblk = (N + EBS_ROWS - 1) / EBS_ROWS;
        float *P = (float *)scratch(nblk * VD * sizeof(float));
        embed_bwd_small_kernel<<<(unsigned)nblk, EBS_THREADS, (size_t)S * VD * sizeof(float), g_stream>>>(
            P, dx, ids, N, D, (int)V, S);
        LAUNCH_CHECK("embed_bwd_small");
        embed_bwd_small_merge_kernel<<<(unsigned)((VD + 255) / 256), 256, 0, g_stream>>>(dE, P, nblk, VD);
        LAUNCH_CHECK("embed_bwd_small_merge");
        return;
    }
    int64_t ntiles = (N + RS_TILE - 1) / RS_TILE, nchunks = (N + EB_CH - 1) / EB_CH;
    size_t bytes = 4 * align256(N * sizeof(int)) + align256(256 * ntiles * sizeof(int)) +
                   2 * align256(nchunks * D * sizeof(float));
    Carve cv = {scratch(bytes)};
    int *ka = cv.take<int>(N), *va = cv.take<int>(N), *kb = cv.take<int>(N), *vb = cv.take<int>(N);
    int *hist = cv.take<int>(256 * ntiles);
    float *P = cv.take<float>(nchunks * D), *Q = cv.take<float>(nchunks * D);
    const int *kin = ids, *vin = NULL;
    int passes = 1;
    while (passes < 4 && (V - 1) >> (8 * passes) > 0) passes++;
    for (int pass = 0; pass < passes; pass++) {
        int *kout = pass % 2 ? kb : ka, *vout = pass % 2 ? vb : va;
        rs_hist_kernel<<<(unsigned)ntiles, RS_TILE, 0, g_stream>>>(hist, kin, N, 8 * pass, (int)ntiles);
        LAUNCH_CHECK("rs_hist");
        scan_exclusive_kernel<<<1, 1024, 0, g_stream>>>(hist, 256 * ntiles);
        LAUNCH_CHECK("scan_exclusive");
        rs_scatter_kernel<<<(unsigned)ntiles, RS_TILE, 0, g_stream>>>(kout, vout, kin, vin, hist, N, 8 * pass,
                                                                      (int)ntiles);
        LAUNCH_CHECK("rs_scatter");
        kin = kout;
        vin = vout;
    }
    dim3 grid((unsigned)nchunks, (unsigned)((D + COL_THREADS - 1) / COL_THREADS));
    embed_bwd_chunks_kernel<<<grid, COL_THREADS, 0, g_stream>>>(dE, P, Q, dx, kin, vin, N, D);
    LAUNCH_CHECK("embed_bwd_chunks");
    embed_bwd_merge_kernel<<<grid, COL_THREADS, 0, g_stream>>>(dE, P, Q, kin, N, D);
    LAUNCH_CHECK("embed_bwd_merge");
}
