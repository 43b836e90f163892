// dist.c: the processes of a data-parallel run: who they are (the launcher's environment, MPI, a rendezvous
// directory) and their collectives, over MPI on host memory or over NCCL on device memory (cuda_ops.h).
#include <math.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#ifdef HGRN2_MPI
#include <mpi.h>
#endif

#include "dist.h"
#include "backend.h"
#include "cli.h"

Dist g_dist = {.rank = 0, .world = 1, .local_rank = 0, .local_world = 1, .bucket_mb = DIST_BUCKET_MB};
const Range R_BUCKET_MB = {"bucket-mb", 0, 1e6};

// The collectives of GPUs: NCCL, in a CUDA build that found its header
#if USE_CUDA && defined(HGRN2_NCCL)
#define HAS_NCCL 1
#else
#define HAS_NCCL 0
#endif

// An environment variable as a count or an index in [lo, hi]; -1 when it is absent. Set but not a number in
// range: a launcher or a user error that would otherwise start a run of the wrong shape, so it is refused.
static int env_int(const char *name, int lo, int hi) {
    const char *s = getenv(name);
    if (!s) return -1;
    long long v;
    if (parse_i64(s, lo, hi, &v)) die("the environment variable %s is '%s', not an integer in [%d, %d]", name, s, lo, hi);
    return (int)v;
}

int dist_detect(void) {
    static const char *const VARS[][4] = {   // rank, size, local rank, local size
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
        {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
        {"MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_SIZE"},
    };
    for (size_t i = 0; i < sizeof VARS / sizeof VARS[0]; i++) {
        int world = env_int(VARS[i][1], 1, 1 << 20);
        if (world < 0) continue;
        int rank = env_int(VARS[i][0], 0, world - 1);
        if (rank < 0) die("%s is set but %s is not: an incomplete MPI launch", VARS[i][1], VARS[i][0]);
        int lw = env_int(VARS[i][3], 1, world), lr = env_int(VARS[i][2], 0, world - 1);
        g_dist.rank = rank;
        g_dist.world = world;
        g_dist.local_world = lw > 0 ? lw : 1;
        g_dist.local_rank = lr >= 0 && lr < g_dist.local_world ? lr : 0;
        g_dist.mpi_launch = 1;
        return world > 1;
    }
    return 0;
}

void dist_refuse(const char *what) {
    if (g_dist.rank == 0)
        fprintf(stderr, "hgrn2: %s runs in one process, but mpirun started %d: run it without mpirun (or with -np 1)\n",
                what, g_dist.world);
    exit(EXIT_USAGE);
}

// Messages of processes other than rank 0 name their rank; their stdout goes nowhere.
static void quiet_unless_rank0(void) {
    static char name[48];
    if (g_dist.rank == 0) return;
    snprintf(name, sizeof name, "hgrn2 (rank %d)", g_dist.rank);
    g_prog_name = name;
    fflush(stdout);
    if (!freopen("/dev/null", "w", stdout)) die("cannot send the output of rank %d to /dev/null: %s", g_dist.rank, strerror(errno));
}

#ifdef HGRN2_MPI
// Every MPI call is checked (MPI_ERRORS_RETURN on the world communicator); a failure ends the process,
// and with it, through the launcher, the run.
#define MPI_CHECK(call)                                                                                       \
    do {                                                                                                      \
        int e_ = (call);                                                                                      \
        if (e_ != MPI_SUCCESS) {                                                                              \
            char s_[MPI_MAX_ERROR_STRING];                                                                    \
            int n_ = 0;                                                                                       \
            MPI_Error_string(e_, s_, &n_);                                                                    \
            die("MPI call failed (%s:%d): %s: %s", __FILE__, __LINE__, #call, s_);                            \
        }                                                                                                     \
    } while (0)
// `real` as MPI names it
#define MPI_REAL_T (sizeof(real) == sizeof(float) ? MPI_FLOAT : MPI_DOUBLE)

// MPI counts are ints: a larger part is refused rather than cut.
static int mpi_count(int64_t n) {
    if (n > 0x7fffffff)
        die("a part of %lld values is too large for one MPI call (at most 2^31 - 1): use more processes", (long long)n);
    return (int)n;
}

// Waits for requests without spinning: polls at first (a collective in step with the others ends within
// microseconds), then sleeps between polls, up to a millisecond. Every collective of a training step waits so: a process that
// reaches one early (its peers still in their backward, or rank 0 writing a checkpoint) would otherwise
// poll a core at full speed for as long as it waits, against its peers and anything else on the machine.
static void mpi_waitall_sleeping(int n, MPI_Request *req) {
    long ns = 1000;
    for (int polls = 0;; polls++) {
        int done = 0;
        MPI_CHECK(MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE));
        if (done) return;
        if (polls < 100) continue;
        nanosleep(&(struct timespec){0, ns}, NULL);
        if (ns < 1000000) ns *= 2;
    }
}

static void mpi_wait_sleeping(MPI_Request *req) { mpi_waitall_sleeping(1, req); }
#endif

// Open MPI waits by polling; it yields the core to other processes between polls only when told to
// (mpi_yield_when_idle, which it reads from the environment at MPI_Init). A run on cores it shares, with
// other work or with its own threads, is better served so; a user's own setting wins.
static void mpi_yield_when_idle(void) {
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
}

void dist_start(const DistArgs *a) {
    int launched = dist_detect();
    g_dist.reduce_bf16 = a->reduce_bf16;
    if (a->rendezvous) {
        if (!a->gpu)
            usage_error("--rendezvous starts NCCL between GPUs and needs --device cuda; on the CPU, launch the "
                        "processes with mpirun (docs/distributed.md)");
        if (launched) usage_error("--rendezvous is for launches without MPI; under mpirun the processes find each other through it");
        int world = a->world >= 0 ? a->world : env_int("WORLD_SIZE", 1, 1 << 20);
        int rank = a->rank >= 0 ? a->rank : env_int("RANK", 0, 1 << 20);
        if (world < 0 || rank < 0)
            usage_error("--rendezvous needs the process's rank and the number of processes: --rank R --world-size N, "
                        "or the environment variables RANK and WORLD_SIZE");
        if (rank >= world) usage_error("--rank %d is not below --world-size %d", rank, world);
        int lr = env_int("LOCAL_RANK", 0, world - 1), lw = env_int("LOCAL_WORLD_SIZE", 1, world);
        g_dist = (Dist){.rank = rank, .world = world, .local_rank = lr >= 0 ? lr : rank,
                        .local_world = lw > 0 ? lw : world, .nccl = world > 1, .reduce_bf16 = a->reduce_bf16};
    } else if (a->rank >= 0 || a->world >= 0) {
        usage_error("--rank and --world-size go with --rendezvous DIR (under mpirun, MPI numbers the processes)");
    } else if (launched) {
#ifdef HGRN2_MPI
        mpi_yield_when_idle();
        int provided;
        MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        g_dist.mpi = 1;
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        int rank, world;
        MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
        MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));
        // the processes on this machine: what the environment said, now from MPI itself
        MPI_Comm local;
        int lr, lw;
        MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local));
        MPI_CHECK(MPI_Comm_rank(local, &lr));
        MPI_CHECK(MPI_Comm_size(local, &lw));
        MPI_CHECK(MPI_Comm_free(&local));
        g_dist.rank = rank;
        g_dist.world = world;
        g_dist.local_rank = lr;
        g_dist.local_world = lw;
        g_dist.nccl = a->gpu;
#else
        (void)mpi_yield_when_idle;
        die("this hgrn2 was built without MPI, but the environment says mpirun started %d processes: install "
            "Open MPI's headers (make setup installs libopenmpi-dev) and rebuild, or run one process", g_dist.world);
#endif
    }
    // the bucket in values: at least one, unless 0 asks for a single bucket
    g_dist.bucket_mb = a->bucket_mb;
    g_dist.bucket = a->bucket_mb > 0 ? (int64_t)ceil(a->bucket_mb * 1048576.0 / sizeof(real)) : 0;
    if (g_dist.world > 1 && g_dist.reduce_bf16 && !g_dist.nccl)
        usage_error("--reduce-dtype bf16 is for NCCL between GPUs (--device cuda); MPI on the CPU reduces in fp32");
    if (g_dist.nccl && !HAS_NCCL)
        die("this hgrn2 was built without NCCL (no nccl.h beside CUDA's headers or in /usr/include), which training "
            "on several GPUs needs: install NCCL's development files and rebuild");
    quiet_unless_rank0();
#if USE_CUDA
    if (a->gpu) cuda_use_device(g_dist.local_rank);
#endif
}

void dist_finish(void) {
#if HAS_NCCL
    if (g_dist.nccl) cuda_nccl_finish();
#endif
#ifdef HGRN2_MPI
    if (g_dist.mpi) {
        fflush(stdout);
        MPI_Finalize();
        g_dist.mpi = 0;
    }
#endif
}

// ---- collectives ----

void dist_allreduce_host(double *x, int n, DistOp op) {
    if (g_dist.world == 1) return;
#if HAS_NCCL
    if (g_dist.nccl) { cuda_nccl_allreduce_host(x, n, op == DIST_MAX); return; }
#endif
#ifdef HGRN2_MPI
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, op == DIST_MAX ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD, &req));
    mpi_wait_sleeping(&req);
#endif
}

// The step's reduction in progress: x[top, world x part) has left in buckets, x[ready, world x part) is final.
static struct {
    real *x;
    int64_t part, top, ready;
    int active;
#ifdef HGRN2_MPI
    MPI_Request *req;       // the MPI_Ireduce of every piece sent this step
    int nreq, capreq;
#endif
} g_red;

void dist_reduce_begin(real *x, int64_t part) {
    if (g_dist.world == 1) return;
    if (g_red.active) die("internal error: a reduction of the gradients began while another was in progress");
    g_red.x = x;
    g_red.part = part;
    g_red.top = g_red.ready = part * g_dist.world;
    g_red.active = 1;
}

// x[lo, hi) leaves: each piece within one block is summed into the block's process, in place there.
static void reduce_bucket(int64_t lo, int64_t hi) {
#if HAS_NCCL
    if (g_dist.nccl) { cuda_nccl_reduce_bucket(g_red.x, lo, hi, g_red.part, g_dist.reduce_bf16); return; }
#endif
#ifdef HGRN2_MPI
    for (int64_t a = lo, b; a < hi; a = b) {
        const int owner = (int)(a / g_red.part);
        b = (int64_t)(owner + 1) * g_red.part < hi ? (int64_t)(owner + 1) * g_red.part : hi;
        if (g_red.nreq == g_red.capreq) {
            g_red.capreq = g_red.capreq ? 2 * g_red.capreq : 64;
            g_red.req = xrealloc(g_red.req, (size_t)g_red.capreq * sizeof(MPI_Request));
        }
        // the root sums into its own values; elsewhere the receive buffer is not used
        const int mine = owner == g_dist.rank;
        MPI_CHECK(MPI_Ireduce(mine ? MPI_IN_PLACE : g_red.x + a, mine ? g_red.x + a : NULL, mpi_count(b - a),
                              MPI_REAL_T, MPI_SUM, owner, MPI_COMM_WORLD, &g_red.req[g_red.nreq++]));
    }
#else
    (void)lo, (void)hi;
#endif
}

void dist_reduce_ready(void *ctx, int64_t lo, int64_t hi) {
    (void)ctx;
    if (!g_red.active || hi != g_red.ready || lo > hi)
        die("internal error: gradients [%lld, %lld) reported final out of turn (expected a stretch ending at %lld)",
            (long long)lo, (long long)hi, (long long)g_red.ready);
    g_red.ready = lo;
    // the top buckets, each of exactly `bucket` values, as long as there are that many final ones left
    while (g_dist.bucket > 0 && g_red.top - g_red.ready >= g_dist.bucket) {
        reduce_bucket(g_red.top - g_dist.bucket, g_red.top);
        g_red.top -= g_dist.bucket;
    }
#ifdef HGRN2_MPI
    // Open MPI moves a nonblocking collective on only inside MPI calls: a test of them all, which returns at
    // once, lets those in flight go on while the backward does
    if (g_dist.mpi && g_red.nreq) {
        int done;
        MPI_CHECK(MPI_Testall(g_red.nreq, g_red.req, &done, MPI_STATUSES_IGNORE));
    }
#endif
}

void dist_reduce_end(void) {
    if (g_dist.world == 1) return;
    if (!g_red.active || g_red.ready != 0)
        die("internal error: the reduction of the gradients ended before the backward reported them all");
    if (g_red.top > 0) reduce_bucket(0, g_red.top);
    g_red.top = 0;
#if HAS_NCCL
    if (g_dist.nccl) cuda_nccl_reduce_wait();
#endif
#ifdef HGRN2_MPI
    if (g_dist.mpi && !g_dist.nccl) mpi_waitall_sleeping(g_red.nreq, g_red.req);
    g_red.nreq = 0;
#endif
    g_red.active = 0;
}

void dist_all_gather(real *x, int64_t part) {
    if (g_dist.world == 1) return;
#if HAS_NCCL
    if (g_dist.nccl) { cuda_nccl_all_gather(x, part); return; }
#endif
#ifdef HGRN2_MPI
    MPI_Request req;
    MPI_CHECK(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, mpi_count(part), MPI_REAL_T, MPI_COMM_WORLD, &req));
    mpi_wait_sleeping(&req);
#endif
}

void dist_gather_host(const real *part_buf, int64_t part, real *all) {
    if (g_dist.world == 1) { dev_download(all, part_buf, (size_t)part * sizeof(real)); return; }
#if HAS_NCCL
    if (g_dist.nccl) { cuda_nccl_gather_host(part_buf, part, all); return; }
#endif
#ifdef HGRN2_MPI
    MPI_Request req;
    MPI_CHECK(MPI_Igather(part_buf, mpi_count(part), MPI_REAL_T, all, mpi_count(part), MPI_REAL_T, 0, MPI_COMM_WORLD, &req));
    mpi_wait_sleeping(&req);
#endif
}

void dist_barrier(void) {
    if (g_dist.world == 1) return;
#if HAS_NCCL
    if (g_dist.nccl) { double x = 0; cuda_nccl_allreduce_host(&x, 1, 0); return; }
#endif
#ifdef HGRN2_MPI
    MPI_Request req;
    MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req));
    mpi_wait_sleeping(&req);
#endif
}

// ---- NCCL's start: rank 0's unique id reaches every process ----

#if HAS_NCCL
#define RENDEZVOUS_MAGIC "HGRN2RDV"
#define RENDEZVOUS_TIMEOUT_S 600
// DIR/nccl_id: the magic, the process count (i64, little-endian as the host), NCCL's id; 8 + 8 + 128 bytes.
enum { RENDEZVOUS_BYTES = 16 + CUDA_NCCL_ID_BYTES };

// Rank 0 writes the id under a temporary name and renames it, so a reader sees all of it or nothing. A file
// already there is an earlier launch's (rank 0 removes its own once every process has connected): another
// process may have read it already, so it is refused rather than replaced.
static void rendezvous_write(const char *dir, const unsigned char *id) {
    mkdir_p(dir);
    char *path = xasprintf("%s/nccl_id", dir), *tmp = xasprintf("%s/nccl_id.tmp%ld", dir, (long)getpid());
    if (access(path, F_OK) == 0)
        die("%s exists: an earlier launch left it (it is removed once every process has connected); remove it, or "
            "give each launch a fresh --rendezvous directory", path);
    unsigned char buf[RENDEZVOUS_BYTES];
    int64_t world = g_dist.world;
    memcpy(buf, RENDEZVOUS_MAGIC, 8);
    memcpy(buf + 8, &world, 8);
    memcpy(buf + 16, id, CUDA_NCCL_ID_BYTES);
    FILE *f = fopen(tmp, "wb");
    if (!f) die("cannot create %s: %s (--rendezvous must name a directory every process can write and read)", tmp, strerror(errno));
    if (fwrite(buf, 1, sizeof buf, f) != sizeof buf || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int e = errno;
        fclose(f);
        unlink(tmp);
        die("writing %s failed: %s", tmp, strerror(e));
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) { int e = errno; unlink(tmp); die("writing %s failed: %s", path, strerror(e)); }
    free(tmp);
    free(path);
}

// The others wait for the file (polling ten times a second), then check it before trusting it.
static void rendezvous_read(const char *dir, unsigned char *id) {
    char *path = xasprintf("%s/nccl_id", dir);
    unsigned char buf[RENDEZVOUS_BYTES];
    for (double t0 = now_s();; nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL)) {
        int64_t size;
        char err[256];
        int fd = open_regular(path, &size, err, sizeof err);
        if (fd >= 0) {
            ssize_t got = size == RENDEZVOUS_BYTES ? read(fd, buf, sizeof buf) : -1;
            close(fd);
            if (got != RENDEZVOUS_BYTES || memcmp(buf, RENDEZVOUS_MAGIC, 8))
                die("%s is not a rendezvous file of hgrn2 (%lld bytes): the --rendezvous directory must be hgrn2's own",
                    path, (long long)size);
            break;
        }
        if (errno != ENOENT) die("cannot read %s: %s", path, err);
        if (now_s() - t0 > RENDEZVOUS_TIMEOUT_S)
            die("rank 0 did not write %s within %d s: is it running, with the same --rendezvous directory (one that "
                "every machine reaches)?", path, RENDEZVOUS_TIMEOUT_S);
    }
    int64_t world;
    memcpy(&world, buf + 8, 8);
    if (world != g_dist.world)
        die("rank 0 started a run of %lld processes (%s), this process was told %d: give every process the same "
            "--world-size (or WORLD_SIZE)", (long long)world, path, g_dist.world);
    memcpy(id, buf + 16, CUDA_NCCL_ID_BYTES);
    free(path);
}
#endif

// The settings that decide the collectives each process calls: the same everywhere, or the processes would
// wait for each other's calls forever (or sum unlike pieces). Rank 0 says so, every process exits 2.
static void dist_agree(void) {
    double v[4] = {g_dist.bucket_mb, -g_dist.bucket_mb, g_dist.reduce_bf16, -g_dist.reduce_bf16};
    dist_allreduce_host(v, 4, DIST_MAX);
    if (v[0] == -v[1] && v[2] == -v[3]) return;
    if (g_dist.rank != 0) exit(EXIT_USAGE);
    if (v[0] != -v[1])
        usage_error("the processes were given different --bucket-mb (from %g to %g MiB): give every process the same",
                    -v[1], v[0]);
    usage_error("the processes were given different --reduce-dtype (fp32 and bf16): give every process the same");
}

void dist_connect(const char *rendezvous) {
    if (g_dist.world == 1) return;
    if (!g_dist.nccl) { dist_agree(); return; }
#if HAS_NCCL
    unsigned char id[CUDA_NCCL_ID_BYTES];
    if (g_dist.rank == 0) cuda_nccl_unique_id(id);
    if (g_dist.mpi) {
#ifdef HGRN2_MPI
        MPI_CHECK(MPI_Bcast(id, CUDA_NCCL_ID_BYTES, MPI_BYTE, 0, MPI_COMM_WORLD));
#endif
    } else if (g_dist.rank == 0) {
        rendezvous_write(rendezvous, id);
    } else {
        rendezvous_read(rendezvous, id);
    }
    cuda_nccl_init(id, g_dist.rank, g_dist.world);
    dist_barrier();   // every process has read the id: the file can go
    if (!g_dist.mpi && g_dist.rank == 0) {
        char *path = xasprintf("%s/nccl_id", rendezvous);
        if (unlink(path) != 0) die("cannot remove %s: %s", path, strerror(errno));
        free(path);
    }
    dist_agree();
#else
    (void)rendezvous;
#endif
}
