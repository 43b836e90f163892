// pathfinder.c: a Pathfinder generator that writes the official layout (metadata/<batch>.npy text lines and
// imgs/<batch>/sample_<k>.png): two marked endpoints, dashed curved paths drawn as curvature-limited random
// walks, labelled 1 when one path joins the markers. The geometry and its guarantees: docs/images.md.
#define _GNU_SOURCE
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "images.h"

// Dash length (pixels), gap, brush, marker radius, bridge, main dashes, distractors and their dashes, turn.
// A gap g puts the last pixel of one dash and the first of the next at most floor(g) + 1 apart on each axis
// after rounding, which is the bridge; different paths keep more than the bridge apart, so dilating by the
// bridge joins the dashes of a path and never two paths.
static const PathfinderGeometry GEOMETRY[2] = {
    {32, 3, 1.5, 1, 1.5, 2, 9, 3, 3, 30},
    {128, 7, 3.0, 2, 3.0, 4, 14, 12, 5, 30},
};

const PathfinderGeometry *pathfinder_geometry(int size) {
    for (int i = 0; i < 2; i++)
        if (GEOMETRY[i].size == size) return &GEOMETRY[i];
    return NULL;
}

#define MAX_OWNERS 32          // paths of one image: a bit each in the nearness map
#define START_TRIES 40         // fresh starts of one path before the image is drawn again
#define DASH_TRIES 24          // turns tried for one dash before the path starts again
#define PATH_VALUE_MIN 110     // paths are drawn at 110..229; 255 is the markers' alone
#define PATH_VALUE_SPAN 120
#define MARKER_VALUE 255

typedef struct {
    const PathfinderGeometry *g;
    int S;
    uint64_t rng;
    uint8_t *img;              // S * S
    uint32_t *near;            // per pixel: the paths with a pixel within the bridge (Chebyshev distance)
    uint32_t *self, stamp;     // per pixel: stamp when near an earlier dash of the path being drawn
    int *pix, npix, cap;       // the path being drawn: its pixels (y * S + x); markers' marked by a flag bit
    int *dash, ndash, dcap;    // the current dash's pixels
    uint64_t redraws, dropped;
} Canvas;

#define MARK_FLAG (1 << 30)

static double uniform(Canvas *c) { return rng_uniform(&c->rng); }

static void push_pix(int **v, int *n, int *cap, int p) {
    if (*n == *cap) *v = xrealloc(*v, (size_t)(*cap = *cap ? 2 * *cap : 256) * sizeof **v);
    (*v)[(*n)++] = p;
}

// Whether pixel p may belong to path `owner`: inside the border and not near another path (nor, with self,
// near an earlier dash of its own path).
static int free_for(const Canvas *c, int x, int y, int owner, int self) {
    if (x < 1 || y < 1 || x > c->S - 2 || y > c->S - 2) return 0;
    int p = y * c->S + x;
    if (c->near[p] & ~(1u << owner)) return 0;
    return !(self && c->self[p] == c->stamp);
}

// The pixels of a dash from (ax, ay) along (dx, dy) for length L, brushed; 0 when one is not free.
static int rasterize_dash(Canvas *c, double ax, double ay, double dx, double dy, int owner) {
    const PathfinderGeometry *g = c->g;
    double L = g->paddle - 1;
    c->ndash = 0;
    for (int i = 0;; i++) {
        double t = i * 0.25 < L ? i * 0.25 : L;
        int x0 = (int)floor(ax + t * dx + 0.5), y0 = (int)floor(ay + t * dy + 0.5);
        for (int by = 0; by < g->thickness; by++)
            for (int bx = 0; bx < g->thickness; bx++) {
                if (!free_for(c, x0 + bx, y0 + by, owner, 1)) return 0;
                push_pix(&c->dash, &c->ndash, &c->dcap, (y0 + by) * c->S + x0 + bx);
            }
        if (t >= L) return 1;
    }
}

// Marks the pixels within the bridge of pix[from, to) in the path's own nearness stamp.
static void mark_self(Canvas *c, int from, int to) {
    int B = c->g->bridge, S = c->S;
    for (int i = from; i < to; i++) {
        int x = (c->pix[i] & ~MARK_FLAG) % S, y = (c->pix[i] & ~MARK_FLAG) / S;
        for (int yy = y - B; yy <= y + B; yy++)
            for (int xx = x - B; xx <= x + B; xx++)
                if (xx >= 0 && yy >= 0 && xx < S && yy < S) c->self[yy * S + xx] = c->stamp;
    }
}

// The disc of a marker centred on the pixel nearest (x, y); 0 when it does not fit.
static int add_marker(Canvas *c, double x, double y, int owner) {
    int cx = (int)floor(x + 0.5), cy = (int)floor(y + 0.5), R = (int)ceil(c->g->marker_radius);
    double r2 = c->g->marker_radius * c->g->marker_radius;
    for (int dy = -R; dy <= R; dy++)
        for (int dx = -R; dx <= R; dx++) {
            if (dx * dx + dy * dy > r2) continue;
            if (!free_for(c, cx + dx, cy + dy, owner, 0)) return 0;
            push_pix(&c->pix, &c->npix, &c->cap, ((cy + dy) * c->S + cx + dx) | MARK_FLAG);
        }
    return 1;
}

// Draws path `owner` of n dashes as a random walk whose direction turns by at most turn_degrees per dash,
// with markers at its start (marks & 1) and its end (marks & 2); commits it to the image. Returns 0 when no
// placement was found.
static int draw_path(Canvas *c, int owner, int n, int marks) {
    const PathfinderGeometry *g = c->g;
    double turn = g->turn_degrees * M_PI / 180, L = g->paddle - 1;
    for (int attempt = 0; attempt < START_TRIES; attempt++) {
        c->npix = 0;
        if (++c->stamp == 0) {   // the stamps wrapped: clear them so that no old one matches
            memset(c->self, 0, (size_t)c->S * c->S * sizeof *c->self);
            c->stamp = 1;
        }
        double m = g->marker_radius + 2;
        double sx = m + uniform(c) * (c->S - 1 - 2 * m), sy = m + uniform(c) * (c->S - 1 - 2 * m);
        double th = uniform(c) * 2 * M_PI, ex = sx, ey = sy;
        int ok = 1, prev_from = 0;
        for (int k = 0; k < n && ok; k++) {
            int placed = 0;
            for (int t = 0; t < DASH_TRIES && !placed; t++) {
                double a = k == 0 ? th : th + (2 * uniform(c) - 1) * turn;
                double dx = cos(a), dy = sin(a), ax = k == 0 ? sx : ex + g->gap * dx, ay = k == 0 ? sy : ey + g->gap * dy;
                if (!rasterize_dash(c, ax, ay, dx, dy, owner)) continue;
                placed = 1;
                th = a;
                ex = ax + L * dx;
                ey = ay + L * dy;
            }
            if (!placed) { ok = 0; break; }
            // The dash before this one joins the path's own nearness, so that the walk does not run back into
            // itself (the newest dash may touch its neighbour, as dashes of a curve do).
            int from = c->npix;
            mark_self(c, prev_from, from);
            prev_from = from;
            for (int i = 0; i < c->ndash; i++) push_pix(&c->pix, &c->npix, &c->cap, c->dash[i]);
        }
        if (!ok) continue;
        if ((marks & 1) && !add_marker(c, sx, sy, owner)) continue;
        if ((marks & 2) && !add_marker(c, ex, ey, owner)) continue;
        // Both markers on one path: far enough apart to be two discs, not one blob.
        double d = hypot(ex - sx, ey - sy);
        if (marks == 3 && d < 2 * g->marker_radius + 3) continue;
        int v = PATH_VALUE_MIN + (int)(uniform(c) * PATH_VALUE_SPAN), B = g->bridge, S = c->S;
        for (int i = 0; i < c->npix; i++) {
            int p = c->pix[i] & ~MARK_FLAG, val = c->pix[i] & MARK_FLAG ? MARKER_VALUE : v;
            if (c->img[p] < val) c->img[p] = (uint8_t)val;
            int x = p % S, y = p / S;
            for (int yy = y - B; yy <= y + B; yy++)
                for (int xx = x - B; xx <= x + B; xx++)
                    if (xx >= 0 && yy >= 0 && xx < S && yy < S) c->near[yy * S + xx] |= 1u << owner;
        }
        return 1;
    }
    return 0;
}

// One image of the given label: two long paths P and Q, markers at both ends of P (label 1) or at one end of
// each (label 0), then the distractors, each a shorter path; drawn again from the start when P or Q finds
// no room.
static void draw_image(Canvas *c, int label) {
    const PathfinderGeometry *g = c->g;
    for (;;) {
        memset(c->img, 0, (size_t)c->S * c->S);
        memset(c->near, 0, (size_t)c->S * c->S * sizeof *c->near);
        int mq = label ? 0 : (uniform(c) < 0.5 ? 1 : 2);
        if (draw_path(c, 0, g->main_paddles, label ? 3 : (uniform(c) < 0.5 ? 1 : 2)) && draw_path(c, 1, g->main_paddles, mq)) break;
        c->redraws++;
    }
    for (int k = 0; k < g->distractors && 2 + k < MAX_OWNERS; k++)
        if (!draw_path(c, 2 + k, g->distractor_paddles, 0)) c->dropped++;
}

int pathfinder_generate(const PathfinderOptions *o) {
    const PathfinderGeometry *g = pathfinder_geometry(o->size);
    if (!g) die("generate: pathfinder images are 32 or 128 pixels wide, not %d", o->size);
    if (!o->out) die("generate: an output directory is required");
    if (o->count < 2 || o->count > (1ull << 24)) die("generate: %llu images is outside [2, 2^24]", (unsigned long long)o->count);
    char *meta = xasprintf("%s/metadata", o->out), *imgs = xasprintf("%s/imgs", o->out);
    if (file_exists(meta) || file_exists(imgs))
        die("%s already holds metadata/ or imgs/; remove them or choose another --out", o->out);
    mkdir_p(meta);
    mkdir_p(imgs);
    int S = g->size;
    Canvas c = {.g = g, .S = S, .rng = mix64(o->seed ^ 0x70617468666E6472ull)};
    c.img = xcalloc((size_t)S * S, 1);
    c.near = xcalloc((size_t)S * S, sizeof *c.near);
    c.self = xcalloc((size_t)S * S, sizeof *c.self);
    uint64_t nbatch = (o->count + PATHFINDER_BATCH - 1) / PATHFINDER_BATCH, done = 0, positive = 0, bytes = 0;
    int tty = isatty(2);
    double t0 = now_s(), last = t0;
    int pair_flip = 0;
    for (uint64_t b = 0; b < nbatch; b++) {
        char *dir = xasprintf("%s/%llu", imgs, (unsigned long long)b);
        mkdir_p(dir);
        char *final = xasprintf("%s/%llu.npy", meta, (unsigned long long)b), *tmp = xasprintf("%s.tmp", final);
        data_cleanup_add(tmp);
        FILE *f = data_create_file(tmp);
        uint64_t n = o->count - done < PATHFINDER_BATCH ? o->count - done : PATHFINDER_BATCH;
        for (uint64_t k = 0; k < n; k++, done++) {
            // Half positive: each pair of images holds one of each, in a random order.
            if (done % 2 == 0) pair_flip = uniform(&c) < 0.5;
            int label = (int)(done % 2) ^ pair_flip;
            draw_image(&c, label);
            positive += (uint64_t)label;
            char *png = xasprintf("%s/sample_%llu.png", dir, (unsigned long long)k);
            png_write_gray(png, S, S, c.img);
            struct stat st;
            if (stat(png, &st) == 0) bytes += (uint64_t)st.st_size;
            free(png);
            // The official fields: folder, file name, number, label, then this generator's parameters
            // (turn, dashes of the two paths, of a distractor, dash length, brush, gap, distractors).
            if (fprintf(f, "imgs/%llu sample_%llu.png %llu %d %d %d %d %d %d %.1f %d\n", (unsigned long long)b,
                        (unsigned long long)k, (unsigned long long)k, label, g->turn_degrees, g->main_paddles,
                        g->distractor_paddles, g->paddle, g->thickness, g->gap, g->distractors) < 0)
                die("writing %s failed: %s", tmp, strerror(errno));
            double t = now_s();
            if (t - last >= (tty ? 0.25 : 5.0)) {
                last = t;
                double rate = (double)done / (t - t0), eta = (double)(o->count - done) / (rate > 0 ? rate : 1);
                fprintf(stderr, "%sgenerate: pathfinder%d: %llu of %llu images, %.1f MB, %.0f/s, ETA %.0f s%s", tty ? "\r" : "",
                        S, (unsigned long long)done, (unsigned long long)o->count, (double)bytes / 1e6, rate, eta,
                        tty ? "\x1b[K" : "\n");
            }
        }
        // The batch's metadata gets its name once its images are written: prepare reads only what it lists.
        data_commit_file(f, tmp, final);
        free(dir);
        free(final);
        free(tmp);
    }
    if (tty) fputc('\n', stderr);
    printf("generate: pathfinder%d: %llu images of %dx%d (%llu positive) in %llu batches; %llu redraws, %llu distractors "
           "without room; %.1f MB in %.1f s; wrote %s\n", S, (unsigned long long)o->count, S, S, (unsigned long long)positive,
           (unsigned long long)nbatch, (unsigned long long)c.redraws, (unsigned long long)c.dropped, (double)bytes / 1e6,
           now_s() - t0, o->out);
    fflush(stdout);
    free(c.img);
    free(c.near);
    free(c.self);
    free(c.pix);
    free(c.dash);
    free(meta);
    free(imgs);
    return 0;
}
