// dist.h: data-parallel training over several processes (docs/distributed.md): who this process is among
// them, and the collectives the training step needs. A launcher starts the processes: mpirun (Open MPI, MPICH
// or MVAPICH, recognised from the environment before MPI_Init), or, on GPUs without MPI, anything that sets
// RANK and WORLD_SIZE (or --rank and --world-size) with a shared --rendezvous directory. A process started
// alone is a world of one and never calls MPI.
// The collectives run over MPI on host memory with the CPU backend, over NCCL on device memory with the
// CUDA backend, behind the same calls: every buffer below is backend memory, except where a call says host.
// Every process must make the same calls in the same order.
#ifndef HGRN2_DIST_H
#define HGRN2_DIST_H

#include "common.h"

typedef struct {
    int rank, world;                // this process, and how many there are: 0 and 1 without a launcher
    int local_rank, local_world;    // the same on this machine: local_rank is the GPU a process drives
    int mpi_launch;                 // an MPI launcher started this process (so every rank has the same argv)
    int mpi;                        // MPI_Init was called (dist_finish calls MPI_Finalize)
    int nccl;                       // the collectives run over NCCL on device memory (the CUDA backend)
    int reduce_bf16;                // NCCL: the gradients travel in bf16 (--reduce-dtype bf16)
    double bucket_mb;               // --bucket-mb: the buckets of the gradients' reduction, in MiB of gradients
    int64_t bucket;                 // the same in values; 0: one bucket, the whole vector after the backward
} Dist;
extern Dist g_dist;

// What the launcher says, from the environment alone (no MPI call, so a plain run costs nothing): Open MPI's
// OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}, MPICH's PMI_{RANK,SIZE} and MPI_LOCAL{RANKID,NRANKS},
// MVAPICH's MV2_COMM_WORLD_{RANK,SIZE,LOCAL_RANK}. Fills g_dist's rank, world and local ranks; returns
// whether an MPI launcher started more than one process.
int dist_detect(void);
// A command that runs on one process only refuses a launch of several: rank 0 says so, every rank exits 2.
void dist_refuse(const char *what);

// How train starts the world (its flags --rendezvous, --rank, --world-size, --reduce-dtype, --bucket-mb).
typedef struct {
    const char *rendezvous;         // a directory every process can reach: NCCL's start without MPI
    int rank, world;                // with rendezvous: -1 when not given (then RANK and WORLD_SIZE)
    int gpu;                        // --device cuda
    int reduce_bf16;                // --reduce-dtype bf16
    double bucket_mb;               // --bucket-mb (DIST_BUCKET_MB when not given)
} DistArgs;
// The buckets of the gradients' reduction (dist_reduce_ready): 25 MiB of gradients, as in PyTorch's DDP, a
// size at which NCCL runs near its full bandwidth while the first buckets leave early in the backward.
#define DIST_BUCKET_MB 25.0
extern const Range R_BUCKET_MB;     // the values --bucket-mb takes
// Before machine_start: MPI_Init under an MPI launcher of several processes (dies when this hgrn2 was built
// without MPI), or the ranks of a rendezvous; on the GPU, the device local_rank is chosen. A process other
// than rank 0 prints nothing on stdout from here on (errors still go to stderr, named by rank). Usage
// errors for a combination that cannot work (--rendezvous on the CPU, bf16 reduction over MPI, ...).
void dist_start(const DistArgs *a);
// After machine_start, with several processes: on GPUs, the NCCL communicator (its id broadcast over MPI, or
// written by rank 0 into the rendezvous directory as DIR/nccl_id and read by the others, who wait for it up
// to 10 minutes; rank 0 removes it once every process has connected); then every process checks that all
// were given the same --bucket-mb and --reduce-dtype, which their collectives depend on (a usage error
// otherwise). Nothing for a world of one.
void dist_connect(const char *rendezvous);
// The end of a run that went well (or stopped on a signal, every rank alike): MPI_Finalize where MPI_Init was
// called. A process that dies does not come here: the launcher then ends the others.
void dist_finish(void);

// ---- collectives ----
typedef enum { DIST_SUM, DIST_MAX } DistOp;
// x[n] (host) = the op over every process's x[n], in double.
void dist_allreduce_host(double *x, int n, DistOp op);
// The gradients' reduction of ZeRO-1, overlapped with the backward. x holds world x part values, block r for
// process r; at the end the sum over the processes of this process's block lands in that block, x + rank x
// part (in fp32 or, with reduce_bf16 over NCCL, through bf16); the other blocks are left undefined.
// dist_reduce_begin starts a step's reduction, before the backward of its last micro-batch. The backward
// reports each stretch [lo, hi) of x as it becomes final, in descending order down to 0 (dist_reduce_ready is
// model_backward's grads_ready, model.h): as soon as g_dist.bucket values are final and not yet sent, the top
// bucket of them leaves; each piece of a bucket within one block is summed into that block's process
// (MPI_Ireduce with that process as the root, or ncclReduce on NCCL's own stream, after the ops that made
// the bucket final). Over MPI, each report also lets the reductions in flight progress (MPI_Testall), without
// waiting. dist_reduce_end sends what is left (all of x with a bucket of 0) and waits for every bucket: from
// there on, x's own block may be read. Every process must send the same buckets: dist_connect checked that
// they have the same bucket size. A world of one: nothing to do.
void dist_reduce_begin(real *x, int64_t part);
void dist_reduce_ready(void *ctx, int64_t lo, int64_t hi);
void dist_reduce_end(void);
// x holds world x part values: every process's block rank x part is copied into that block everywhere.
void dist_all_gather(real *x, int64_t part);
// Rank 0 receives every process's part values (backend memory) into all (host, world x part values, in
// rank order; NULL elsewhere).
void dist_gather_host(const real *part_buf, int64_t part, real *all);
// Waits for every process. Over MPI the wait sleeps rather than spins: the others may wait here for as long
// as rank 0 writes a checkpoint.
void dist_barrier(void);

#endif
