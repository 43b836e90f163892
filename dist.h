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
} Dist;
extern Dist g_dist;

// What the launcher says, from the environment alone (no MPI call, so a plain run costs nothing): Open MPI's
// OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}, MPICH's PMI_{RANK,SIZE} and MPI_LOCAL{RANKID,NRANKS},
// MVAPICH's MV2_COMM_WORLD_{RANK,SIZE,LOCAL_RANK}. Fills g_dist's rank, world and local ranks; returns
// whether an MPI launcher started more than one process.
int dist_detect(void);
// A command that runs on one process only refuses a launch of several: rank 0 says so, every rank exits 2.
void dist_refuse(const char *what);

// How train starts the world (its flags --rendezvous, --rank, --world-size, --reduce-dtype).
typedef struct {
    const char *rendezvous;         // a directory every process can reach: NCCL's start without MPI
    int rank, world;                // with rendezvous: -1 when not given (then RANK and WORLD_SIZE)
    int gpu;                        // --device cuda
    int reduce_bf16;                // --reduce-dtype bf16
} DistArgs;
// Before machine_start: MPI_Init under an MPI launcher of several processes (dies when this hgrn2 was built
// without MPI), or the ranks of a rendezvous; on the GPU, the device local_rank is chosen. A process other
// than rank 0 prints nothing on stdout from here on (errors still go to stderr, named by rank). Usage
// errors for a combination that cannot work (--rendezvous on the CPU, bf16 reduction over MPI, ...).
void dist_start(const DistArgs *a);
// After machine_start, with several processes on GPUs: the NCCL communicator (its id broadcast over MPI, or
// written by rank 0 into the rendezvous directory as DIR/nccl_id and read by the others, who wait for it up
// to 10 minutes; rank 0 removes it once every process has connected). Nothing otherwise.
void dist_connect(const char *rendezvous);
// The end of a run that went well (or stopped on a signal, every rank alike): MPI_Finalize where MPI_Init was
// called. A process that dies does not come here: the launcher then ends the others.
void dist_finish(void);

// ---- collectives ----
typedef enum { DIST_SUM, DIST_MAX } DistOp;
// x[n] (host) = the op over every process's x[n], in double.
void dist_allreduce_host(double *x, int n, DistOp op);
// x holds world x part values, block r for process r: the sum over processes of this process's block lands
// in that block, x + rank x part (grads, in fp32 or, with reduce_bf16 over NCCL, through bf16). The other
// blocks are left undefined.
void dist_reduce_scatter(real *x, int64_t part);
// x holds world x part values: every process's block rank x part is copied into that block everywhere.
void dist_all_gather(real *x, int64_t part);
// Rank 0 receives every process's part values (backend memory) into all (host, world x part values, in
// rank order; NULL elsewhere).
void dist_gather_host(const real *part_buf, int64_t part, real *all);
// Waits for every process. Over MPI the wait sleeps rather than spins: the others may wait here for as long
// as rank 0 writes a checkpoint.
void dist_barrier(void);

#endif
