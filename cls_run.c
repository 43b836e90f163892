// cls_run.c: the classifier's training run and evaluation: presets, the schedule, the step, the loop with its
// progress lines, log.tsv and checkpoints; Ctrl-C stops it after saving (docs/classify.md).
#include <math.h>
#include <omp.h>

#include "cls_run.h"
#include "backend.h"
#include "model.h"
#include "train.h"
#include "lra.h"
#include "augment.h"

// The HGRN2 authors' LRA runs: the model, the batch, AdamW's peak lr, the gradient clip (0: none), the weight
// decay, the warmup and the cosine's length in steps, the epochs. Their text tasks ran on several GPUs, each
// padding its share of the batch to its own longest document, with BatchNorm's statistics synchronised over
// the whole batch: the padding groups (ListOps and Retrieval 8 GPUs of 16 examples, Text 2 of 32). The image
// tasks scan their images in 2-D: four scans summed (1), or Path-X's series form, the mixer along rows then
// along columns (2). Image trains on crops from 4 pixels of padding, and flips.
// Fashion-MNIST (not an LRA task) reads its 28 x 28 images as 7 x 7 patches of 4 x 4 pixels, the ImageNet
// models' input of the HGRN2 paper, with a small model sized to train in minutes: docs/classifier.md says why.
const ClsPreset CLS_PRESETS[NCLS_PRESETS] = {
    {"lra-listops", 5, 64, 4, 1, NORM_BATCH, POS_SINUSOIDAL, 0.0, 128, LRA_LISTOPS_LEN, 5e-4, 0, 0, 5000, 50000, 50, 0, 0, 0, CLS_INIT_TORCH, 0.1, 16},
    {"lra-text", 4, 128, 8, 1, NORM_LAYER, POS_NONE, 0.1, 64, LRA_TEXT_LEN, 5e-3, 0, 0, 10000, 50000, 40, 0, 0, 0, CLS_INIT_TORCH, 0.0, 32},
    {"lra-retrieval", 2, 256, 2, 2, NORM_BATCH, POS_SINUSOIDAL, 0.0, 128, LRA_RETRIEVAL_LEN, 5e-3, 1, 0, 312, 50000, 20, 0, 0, 0, CLS_INIT_TORCH, 0.1, 16},
    {"lra-image", 6, 512, 2, 1, NORM_BATCH, POS_SINUSOIDAL, 0.0, 64, 0, 3e-3, 0, 0, 30000, 50000, 75, 1, 0, 4, CLS_INIT_TORCH, 0.1, 0},
    {"lra-pathfinder", 6, 128, 2, 1, NORM_BATCH, POS_NONE, 0.0, 128, 0, 2e-3, 0, 0, 50000, 500000, 100, 1, 0, 0, CLS_INIT_TORCH, 0.0, 0},
    {"lra-pathx", 6, 32, 1, 1, NORM_BATCH, POS_SINUSOIDAL, 0.0, 256, 0, 7.5e-4, 1, 0, 150000, 500000, 200, 2, 0, 0, CLS_INIT_TORCH, 0.1, 0},
    {"fashion-mnist", 6, 256, 4, 2, NORM_BATCH, POS_SINUSOIDAL, 0.1, 128, 0, 2e-3, 1, 0.05, 844, 16880, 40, 1, 4, 2, CLS_INIT_NORMAL, 0.1, 0},
    // ImageNet (the HGRN2 paper's DeiT-tiny and DeiT-small sized models): 1-D scans over the raster order of
    // 16 x 16 patches of 14 x 14 pixels, heads of key dim 64 (DeiT's 3 and 6 heads); warmup in epochs, lr per
    // 512 examples of batch, cosine to 1e-5 over the run; the loader does the crops and flips.
    {"imagenet-tiny", 12, 192, 64, 3, NORM_LAYER, POS_NONE, 0.0, 1024, 0, 7.5e-4, 5, 0.05, 20, 0, 300, 0, 14, 0, CLS_INIT_NORMAL, 0.0, 0},
    {"imagenet-small", 12, 384, 64, 3, NORM_LAYER, POS_NONE, 0.0, 2048, 0, 7.5e-4, 5, 0.1, 10, 0, 300, 0, 14, 0, CLS_INIT_NORMAL, 0.0, 0},
};

const ClsPreset *cls_preset_find(const char *task) {
    if (!strcmp(task, "imagenet")) task = "imagenet-tiny";
    for (int i = 0; i < NCLS_PRESETS; i++) if (!strcmp(CLS_PRESETS[i].task, task)) return &CLS_PRESETS[i];
    return NULL;
}

int cls_data_pixels(const Examples *e, int *h, int *w, int *c) {
    int a, b, d, n = 0;
    if (sscanf(example_vocab_desc(e), "pixels %dx%dx%d%n", &a, &b, &d, &n) != 3 || n == 0) return 0;
    if (a < 1 || b < 1 || d < 1 || d > 3 || (int64_t)a * b > (1 << 24) || example_vocab(e) != 256) return 0;
    *h = a; *w = b; *c = d;
    return 1;
}

void cls_pixel_norm(ClsConfig *cfg, int c) {
    static const double mean[3] = {0.4914, 0.4822, 0.4465}, sd[3] = {0.247, 0.243, 0.261};
    for (int i = 0; i < 3; i++) {
        cfg->pix_mean[i] = c == 3 ? mean[i] : i < c ? 0.5 : 0;
        cfg->pix_std[i] = c == 3 ? sd[i] : i < c ? 0.5 : 0;
    }
}

// Mirrored padding: index i of a line of n, reflected at both ends without repeating the edge (torchvision's
// "reflect" padding mode).
static int reflect(int i, int n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

void cls_augment(int32_t *pix, int n, int h, int w, int ch, int pad, uint64_t seed, int64_t step) {
    if (pad < 0 || pad > 4) die("internal error: crops from %d pixels of padding", pad);
    const size_t vals = (size_t)h * w * ch;
    int32_t *tmp = xmalloc(vals * sizeof(int32_t));
    for (int b = 0; b < n; b++) {
        uint64_t r = mix64(mix64(seed ^ 0x6175676D656E74ull) + (uint64_t)step * 1000003ull + (uint64_t)b);
        const uint64_t u = splitmix64(&r);
        const uint64_t span = (uint64_t)(2 * pad + 1);
        const int dy = (int)(u % span) - pad, dx = (int)((u >> 8) % span) - pad, flip = (int)((u >> 16) & 1);
        int32_t *img = pix + (size_t)b * vals;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const int sy = reflect(y + dy, h), sx0 = reflect(x + dx, w), sx = flip ? w - 1 - sx0 : sx0;
                for (int c = 0; c < ch; c++) tmp[((size_t)y * w + x) * ch + c] = img[((size_t)sy * w + sx) * ch + c];
            }
        memcpy(img, tmp, vals * sizeof(int32_t));
    }
    free(tmp);
}

const Range R_GLU_RATIO = {"glu-ratio", 1, 64}, R_DROPOUT = {"dropout", 0, 0.99},
            R_INPUT_DROPOUT = {"input-dropout", 0, 0.99}, R_EPOCHS = {"epochs", 1, 1 << 20},
            R_SCHED_STEPS = {"sched-steps", 1, 0x1p40}, R_TRAIN_EXAMPLES = {"train examples", 1, 0x1p40};
const Range R_SMOOTHING = {"smoothing", 0, 0.99}, R_MIXUP = {"mixup", 0, 100}, R_CUTMIX = {"cutmix", 0, 100},
            R_MIX_SWITCH = {"mix-switch", 0, 1}, R_MIX_PROB = {"mix-prob", 0, 1}, R_WARMUP_LR = {"warmup-lr", 0, 10};

double cls_lr_at(const ClsHyper *h, int64_t step, int64_t spe) {
    if (!h->lr_per_epoch) {
        // the language model's cosine (train.c) over sched_steps instead of the run's length
        Hyper lm = {.steps = h->sched_steps, .warmup = h->warmup, .lr = h->lr, .min_lr = h->min_lr, .sched = SCHED_COSINE};
        return lr_at(&lm, step);
    }
    if (spe < 1) die("internal error: a per-epoch schedule of %lld steps an epoch", (long long)spe);
    const double e = (double)((step > 0 ? step - 1 : 0) / spe), W = (double)h->warmup / (double)spe,
                 E = (double)h->sched_steps / (double)spe;
    if (e < W) return h->warmup_lr + e * (h->lr - h->warmup_lr) / W;
    if (e >= E) return h->min_lr;
    return h->min_lr + 0.5 * (h->lr - h->min_lr) * (1 + cos(M_PI * e / E));
}

// A uniform integer in [0, n) from the generator.
static int draw_below(uint64_t *r, int n) { return (int)(((unsigned __int128)splitmix64(r) * (uint64_t)n) >> 64); }

ClsMix cls_mix_draw(const ClsHyper *h, int img_h, int img_w, int64_t step) {
    ClsMix mx = {.kind = MIX_NONE, .lam = 1, .smoothing = h->smoothing};
    if (!(h->mixup > 0) && !(h->cutmix > 0)) return mx;
    if (img_h < 1 || img_w < 1) die("internal error: mixing images of %d x %d", img_h, img_w);
    // timm's order of draws: whether to mix, then cutmix or mixup (both on), then lam, then the box's center
    uint64_t r = mix64(mix64(h->seed ^ 0x6D69787570637574ull) + (uint64_t)step);
    if (!(rng_uniform(&r) < h->mix_prob)) return mx;
    int cut = h->cutmix > 0;
    if (h->mixup > 0 && h->cutmix > 0) cut = rng_uniform(&r) < h->mix_switch;
    mx.lam = aug_beta(&r, cut ? h->cutmix : h->mixup, cut ? h->cutmix : h->mixup);
    mx.kind = cut ? MIX_CUTMIX : MIX_MIXUP;
    if (cut) {
        const double ratio = sqrt(1 - mx.lam);
        const int ch = (int)(img_h * ratio), cw = (int)(img_w * ratio);
        const int cy = draw_below(&r, img_h), cx = draw_below(&r, img_w);
        mx.y0 = cy - ch / 2 < 0 ? 0 : cy - ch / 2;
        mx.y1 = cy + ch / 2 > img_h ? img_h : cy + ch / 2;
        mx.x0 = cx - cw / 2 < 0 ? 0 : cx - cw / 2;
        mx.x1 = cx + cw / 2 > img_w ? img_w : cx + cw / 2;
        mx.lam = 1 - (double)(mx.y1 - mx.y0) * (mx.x1 - mx.x0) / ((double)img_h * img_w);
    }
    return mx;
}

int64_t cls_steps_per_epoch(uint64_t n, int B) { return (int64_t)((n + (uint64_t)B - 1) / (uint64_t)B); }

uint64_t cls_drop_seed(uint64_t seed, int64_t step) { return mix64(mix64(seed ^ 0x64726F706F7574ull) + (uint64_t)step); }

// ----------------------------------------------------------------------------------------------------------
// Batches and evaluation

// A batch: its inputs as int32 values (tokens), or the JPEG loader's 8-bit pixels where it decoded them (pix8,
// tokens NULL: the loader's memory, valid until its next batch)
typedef struct { int32_t *tokens, *lens, *labels; const uint8_t *pix8; } ClsBatch;
static ClsBatch batch_alloc(const ClsSource *s, int B, int T, int ndoc) {
    size_t docs = (size_t)B * (size_t)ndoc;
    return (ClsBatch){s->im ? NULL : xmalloc(docs * (size_t)T * sizeof(int32_t)), xmalloc(docs * sizeof(int32_t)),
                      xmalloc((size_t)B * sizeof(int32_t)), NULL};
}
static void batch_free(ClsBatch *b) { free(b->tokens); free(b->lens); free(b->labels); }
static double batch_forward(ClsModel *m, ClsActs *a, const ClsBatch *b, int n, int train, uint64_t drop_seed,
                            int64_t *correct, int32_t *pred) {
    if (b->pix8) return cls_forward8(m, a, b->pix8, b->lens, b->labels, n, train, drop_seed, correct, pred);
    return cls_forward(m, a, b->tokens, b->lens, b->labels, n, train, drop_seed, correct, pred);
}

uint64_t cls_source_count(const ClsSource *s) {
    return s->im ? jpeg_set_count(im_loader_set(s->im)) : example_count(example_loader_data(s->ex));
}
uint32_t cls_source_classes(const ClsSource *s) {
    return s->im ? jpeg_set_classes(im_loader_set(s->im)) : example_classes(example_loader_data(s->ex));
}
static ExampleLoaderState source_state(const ClsSource *s) {
    return s->im ? im_loader_get_state(s->im) : example_loader_get_state(s->ex);
}
// The next batch; images are whole (every length the image's values).
static int source_next(ClsSource *s, ClsBatch *b, int B, int T) {
    if (!s->ex) {
        int n = im_loader_next(s->im, &b->pix8, b->labels);
        for (int i = 0; i < B; i++) b->lens[i] = i < n ? T : 0;
        return n;
    }
    return example_loader_next(s->ex, b->tokens, b->lens, b->labels, NULL);
}

ClsScore cls_evaluate(ClsModel *m, ClsActs *a, ClsSource *ld, int B, int T, int64_t max_batches, ClsEvalOut *out) {
    ClsBatch b = batch_alloc(ld, B, T, m->c.ndoc);
    if (ld->im) im_loader_reset(ld->im);
    else example_loader_reset(ld->ex);
    ClsScore sc = {0};
    double sum = 0;
    const int C = m->c.classes;
    int32_t *pred = out ? xmalloc((size_t)B * sizeof(int32_t)) : NULL;
    for (int64_t i = 0; max_batches <= 0 || i < max_batches; i++) {
        int n = source_next(ld, &b, B, T);
        if (!n) break;
        int64_t correct = 0;
        sum += batch_forward(m, a, &b, n, 0, 0, &correct, pred);
        for (int r = 0; out && r < n; r++) {
            const int y = b.labels[r], p = pred[r];
            if (out->confusion && y >= 0) out->confusion[(int64_t)y * C + p]++;
            if (!out->tsv) continue;
            // the predicted class's softmax probability, from the logits on the host
            const real *lg = cls_acts_outputs(a) + (int64_t)r * C, *losses = cls_acts_outputs(a) + (int64_t)n * C;
            double z = 0;
            for (int k = 0; k < C; k++) z += exp((double)lg[k] - (double)lg[p]);
            if (fprintf(out->tsv, "%lld\t%d\t%d\t%.6f\t%.6f\n", (long long)(sc.count + r), y, p, 1 / z,
                        (double)losses[r]) < 0)
                die("cannot write the predictions: %s", strerror(errno));
        }
        sc.count += n;
        sc.correct += correct;
        sc.correct5 += cls_topk_correct(a, n, 5);
    }
    free(pred);
    batch_free(&b);
    sc.loss = sc.count ? sum / (double)sc.count : NAN;
    return sc;
}

// ----------------------------------------------------------------------------------------------------------
// The training step

typedef struct { double loss, acc, grad_norm, lr; } ClsStepResult;

// Optimizer step `step` (from 1) on one full batch: the gradients zeroed, forward with batch statistics and
// dropout, backward of the mean loss, the global gradient norm and clipping to h->clip, AdamW. When the loss
// or the norm is not finite, AdamW is skipped and the parameters stay as they were.
static ClsStepResult cls_train_step(ClsModel *m, ClsActs *a, const ClsHyper *h, int64_t step, int64_t spe,
                                    const ClsBatch *b) {
    ClsStepResult r = {.lr = cls_lr_at(h, step, spe)};
    OP(zero, m->grads, m->lay.n);
    // mixing and soft targets, when on (the plain loss otherwise, as before they existed)
    const ClsMix mix = cls_mix_draw(h, m->c.grid_h, m->c.grid_w, step);
    cls_acts_set_mix(a, &mix);
    int64_t correct = 0;
    double sum = batch_forward(m, a, b, h->B, 1, cls_drop_seed(h->seed, step), &correct, NULL);
    cls_backward(m, a, 1.0 / h->B);     // every row of a shuffled batch holds an example
    r.loss = sum / h->B;
    r.acc = (double)correct / h->B;
    r.grad_norm = cls_grad_norm(m);
    if (fault_nonfinite(step)) r.loss = NAN;
    double scale = h->clip > 0 && r.grad_norm > h->clip ? h->clip / r.grad_norm : 1.0;
    if (!isfinite(r.loss) || !isfinite(r.grad_norm)) return r;
    cls_adamw(m, r.lr, h->beta1, h->beta2, h->adam_eps, h->wd, scale, step);
    return r;
}

// ----------------------------------------------------------------------------------------------------------
// The training run

// test_loss and test_acc: with --eval-test on, at the steps that have val_loss and val_acc (empty otherwise)
#define CLS_LOG_HEADER "step\tepoch\ttrain_loss\ttrain_acc\tval_loss\tval_acc\tlr\tgrad_norm\ttest_loss\ttest_acc\n"

int cls_train_run(ClsModel *m, ClsRunState *rs, ClsSource *train, ClsSource *val, ClsSource *test, const ClsPlan *p) {
    const ClsConfig *c = &m->c;
    const ClsHyper *h = &rs->h;
    const int64_t spe = cls_steps_per_epoch(rs->train_examples, h->B);
    const int P = cls_positions(c, h->T);
    const int EB = p->eval_batch > 0 && p->eval_batch < h->B ? p->eval_batch : h->B;
    ClsActs *acts = cls_acts_alloc(c, h->B, P, 1), *eacts = val || test ? cls_acts_alloc(c, EB, P, 0) : NULL;
    const char *peak_label;
    const double peak = dev_peak_flops(&peak_label);
    const double flops = 3 * cls_flops_per_example(c, P);        // forward and backward, per example

    printf("+--------------+----------------------------------------------------------\n");
    printf("| task         | %s, data %s: %llu train", rs->task, rs->data, (unsigned long long)cls_source_count(train));
    if (val) printf(", %llu val", (unsigned long long)cls_source_count(val));
    else printf(" (no validation split)");
    if (test) printf(", %llu test", (unsigned long long)cls_source_count(test));
    if (train->im) printf(" JPEG images, %u classes\n", cls_source_classes(train));
    else printf(" examples, vocabulary %u, %u classes\n", example_vocab(example_loader_data(train->ex)), cls_source_classes(train));
    cls_print_config(c, &m->lay, stdout);
    if (train->im) {
        // the paper's parameter counts beside ours, for the presets' sizes
        const char *paper = c->D == 192 && c->L == 12 ? "HGRN2-tiny: 6.1M parameters"
                          : c->D == 384 && c->L == 12 ? "HGRN2-small: 23.8M parameters" : NULL;
        if (paper) printf("| paper        | %s (here %.2fM with %d classes; the head is %d x (dim + 1) of them)\n", paper,
                          (double)m->lay.n / 1e6, c->classes, c->classes);
        printf("| loader       | %d decoding threads, %d batches ahead; random resized crops (scale 0.08-1) and flips\n",
               im_loader_threads(train->im), IM_RING - 1);
        char ra[32] = "no RandAugment", re[48] = "no random erasing", rep[48] = "no repeated augmentation";
        if (h->randaug) snprintf(ra, sizeof ra, "RandAugment m9 mstd0.5 n2");
        if (h->reprob > 0) snprintf(re, sizeof re, "random erasing p %g", h->reprob);
        if (h->repeat > 1) snprintf(rep, sizeof rep, "repeated augmentation x%d", h->repeat);
        printf("| augment      | %s, %s, %s\n", ra, re, rep);
    }
    const ClsPreset *ps = cls_preset_find(rs->task);
    const int augment = c->input == INPUT_PIXELS && ps ? ps->augment : 0;
    char aug[64] = "";
    if (augment) snprintf(aug, sizeof aug, ", random crops (padding %d) and flips", augment);
    if (c->input == INPUT_PIXELS)
        printf("| batch        | %d images of %d x %d x %d%s; an epoch is %lld steps\n", h->B, c->grid_h, c->grid_w,
               c->channels, aug, (long long)spe);
    else
        printf("| batch        | %d examples x %d tokens%s; an epoch is %lld steps\n", h->B, h->T,
               c->ndoc == 2 ? " per document, 2 documents each" : "", (long long)spe);
    if (c->input == INPUT_PIXELS || h->smoothing > 0) {
        char mixing[160] = "no mixup or cutmix";
        const char *every = h->mix_prob >= 1 ? "every batch" : NULL;
        char prob[48];
        if (!every) { snprintf(prob, sizeof prob, "a batch with probability %g", h->mix_prob); every = prob; }
        if (h->mixup > 0 && h->cutmix > 0)
            snprintf(mixing, sizeof mixing, "mixup alpha %g or cutmix alpha %g (cutmix with probability %g), %s", h->mixup,
                     h->cutmix, h->mix_switch, every);
        else if (h->mixup > 0 || h->cutmix > 0)
            snprintf(mixing, sizeof mixing, "%s alpha %g, %s", h->mixup > 0 ? "mixup" : "cutmix",
                     h->mixup > 0 ? h->mixup : h->cutmix, every);
        char smooth[48] = "no label smoothing";
        if (h->smoothing > 0) snprintf(smooth, sizeof smooth, "label smoothing %g", h->smoothing);
        printf("| targets      | %s; %s\n", mixing, smooth);
    }
    if (h->lr_per_epoch)
        printf("| optimizer    | AdamW lr %g (per epoch: warmup from %g over %g epochs, cosine to %g over %g epochs), "
               "betas (%g, %g), eps %g, wd %g, clip %g\n", h->lr, h->warmup_lr, (double)h->warmup / (double)spe,
               h->min_lr, (double)h->sched_steps / (double)spe, h->beta1, h->beta2, h->adam_eps, h->wd, h->clip);
    else
        printf("| optimizer    | AdamW lr %g (warmup %lld, cosine to %g over %lld steps), betas (%g, %g), eps %g, wd %g, "
               "clip %g\n", h->lr, (long long)h->warmup, h->min_lr, (long long)h->sched_steps, h->beta1, h->beta2,
               h->adam_eps, h->wd, h->clip);
    printf("| steps        | %lld (%.4g epochs; eval every %lld%s, checkpoint every %lld), seed %llu\n",
           (long long)h->steps, (double)h->steps / (double)spe, (long long)p->eval_every,
           test ? " with the test split" : "", (long long)p->ckpt_every, (unsigned long long)h->seed);
    printf("| memory       | parameters+grads+AdamW %.1f MiB, activations %.1f MiB\n",
           bytes_mib((m->lay.n * 4 + cls_nstats(c)) * (int64_t)sizeof(real)),
           bytes_mib(cls_acts_bytes(acts) + (eacts ? cls_acts_bytes(eacts) : 0)));
    if (g_gpu) printf("| machine      | %s, out %s\n", device_name(), p->out);
    else printf("| machine      | cpu, %d thread%s, out %s\n", omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s", p->out);
    printf("+--------------+----------------------------------------------------------\n");
    fflush(stdout);

    char *ckpt_path = xasprintf("%s/model.ckpt", p->out), *log_path = xasprintf("%s/log.tsv", p->out);
    if (p->resume) log_cut(log_path, CLS_LOG_HEADER, rs->step);
    FILE *logf = fopen(log_path, p->resume ? "a" : "w");
    if (!logf) die("cannot write %s: %s", log_path, strerror(errno));
    if (!p->resume) fputs(CLS_LOG_HEADER, logf);

    ClsBatch b = batch_alloc(train, h->B, h->T, c->ndoc);
    double t_start = now_s(), t_steps = 0, first_loss = NAN;    // t_steps: time in steps since the last line
    // of which waiting for the JPEG loader's next batch (since the last line, and in all): which one limits
    double t_wait = 0, t_wait_all = 0, t_steps_all = 0;
    double loss = NAN, acc = NAN, sum_loss = 0, sum_acc = 0, val_loss = NAN, val_acc = NAN, val_top5 = NAN;
    double test_loss = NAN, test_acc = NAN;
    int64_t test_step = 0;
    int64_t step0 = rs->step, since = 0, val_step = 0;
    // the means of the current epoch's steps (those of this call, with a finite loss), for the summary line
    double ep_loss = 0, ep_acc = 0;
    int64_t ep_n = 0;
    int rc = 0;
    int64_t last_step = p->stop_at && p->stop_at < h->steps ? p->stop_at : h->steps;
    int64_t bad_run = 0, bad_total = 0;   // steps skipped for a non-finite loss or gradient: in a row, in all
    double best_acc = p->keep > 0 && p->resume ? log_column(log_path, 5, LOG_MAX) : -1;   // val_acc
    warn_resume_without_keep(p->out, p->resume, p->keep);
    stop_signals_catch();     // Ctrl-C or SIGTERM: finish the step, save, stop (train.h)
    while (rs->step < last_step) {
        int64_t step = rs->step + 1;
        double t0 = now_s();
        source_next(train, &b, h->B, h->T);
        const double waited = now_s() - t0;
        t_wait += waited;
        t_wait_all += waited;
        if (augment) cls_augment(b.tokens, h->B, c->grid_h, c->grid_w, c->channels, augment, h->seed, step);
#if USE_CUDA
        // --profile: the first two steps of the call warm up, the next CLS_PROFILE_STEPS are timed op by op
        const int64_t nth = step - step0;
        const int prof = p->profile && nth > 2 && nth <= 2 + CLS_PROFILE_STEPS;
        if (prof) g_prof = 1;
#endif
        ClsStepResult r = cls_train_step(m, acts, h, step, spe, &b);
#if USE_CUDA
        if (prof) {
            g_prof = 0;
            cuda_prof_step();
            if (nth == 2 + CLS_PROFILE_STEPS || step == last_step) {
                printf("profile: GPU time per step of steps %lld to %lld, by (section, op)\n", (long long)(step0 + 3),
                       (long long)step);
                cuda_prof_print((int)(nth - 2));
                fflush(stdout);
            }
        }
#endif
        t_steps += now_s() - t0;
        t_steps_all += now_s() - t0;
        if (!isfinite(r.loss) || !isfinite(r.grad_norm)) {
            // cls_train_step left the parameters and the optimizer as they were: the batch is skipped
            bad_total++;
            if (++bad_run > p->max_bad_steps)
                die("training diverged: %lld steps in a row up to step %lld had a non-finite loss or gradient (loss %g, "
                    "grad norm %g; --max-bad-steps %lld); lower --lr or raise --warmup; the last checkpoint in %s is "
                    "intact", (long long)bad_run, (long long)step, r.loss, r.grad_norm, (long long)p->max_bad_steps,
                    p->out);
            fprintf(stderr, "hgrn2: warning: step %lld skipped: loss %g, grad norm %g (%lld in a row, %lld in all)\n",
                    (long long)step, r.loss, r.grad_norm, (long long)bad_run, (long long)bad_total);
        } else {
            bad_run = 0;
        }
        rs->step = step;
        rs->loader = source_state(train);
        loss = r.loss;
        acc = r.acc;
        if (step == step0 + 1) first_loss = loss;
        sum_loss += loss;
        sum_acc += acc;
        since++;
        if ((step - 1) % spe == 0) ep_loss = ep_acc = 0, ep_n = 0;   // the step that begins an epoch
        if (isfinite(loss)) ep_loss += loss, ep_acc += acc, ep_n++;

        int do_eval = (val || test) && ((p->eval_every && step % p->eval_every == 0) || step == h->steps);
        if (do_eval && val) {
            ClsScore sc = cls_evaluate(m, eacts, val, EB, h->T, p->eval_batches, NULL);
            val_loss = sc.loss;
            val_acc = sc.count ? (double)sc.correct / (double)sc.count : NAN;
            val_top5 = sc.count ? (double)sc.correct5 / (double)sc.count : NAN;
            val_step = step;
        }
        if (do_eval && test) {   // the whole split, whatever --eval-batches says
            ClsScore sc = cls_evaluate(m, eacts, test, EB, h->T, 0, NULL);
            test_loss = sc.loss;
            test_acc = sc.count ? (double)sc.correct / (double)sc.count : NAN;
            test_step = step;
        }
        if (step % p->log_every == 0 || step == last_step || do_eval) {
            // examples/s of the steps alone (waits for the loader included), the ETA from the whole time
            double ex_per_s = (double)since * h->B / t_steps;
            double eta = (now_s() - t_start) / (double)(step - step0) * (double)(h->steps - step);
            char etas[32];
            fmt_duration(etas, sizeof etas, eta);
            printf("step %6lld/%lld | epoch %lld/%lld | loss %.4f | acc %.3f | lr %.2e | grad norm %.3f | %.1f ex/s",
                   (long long)step, (long long)h->steps, (long long)((step - 1) / spe + 1),
                   (long long)((h->steps - 1) / spe + 1), sum_loss / since, sum_acc / since, r.lr, r.grad_norm, ex_per_s);
            if (peak > 0) printf(" | MFU %.1f%%", 100 * flops * ex_per_s / peak);
            if (train->im) printf(" | loader wait %.0f%%", 100 * t_wait / t_steps);
            printf(" | ETA %s", etas);
            if (do_eval && val) printf(" | val loss %.4f | val acc %.4f", val_loss, val_acc);
            if (do_eval && val && train->im) printf(" | val top5 %.4f", val_top5);
            if (do_eval && test) printf(" | test acc %.4f", test_acc);
            printf("\n");
            fflush(stdout);
            sum_loss = sum_acc = t_steps = t_wait = 0;
            since = 0;
        }
        fprintf(logf, "%lld\t%.6f\t%.9g\t%.9g\t", (long long)step, (double)step / (double)spe, loss, acc);
        if (do_eval && val) fprintf(logf, "%.9g\t%.9g", val_loss, val_acc);
        else fputc('\t', logf);
        fprintf(logf, "\t%.9g\t%.9g\t", r.lr, r.grad_norm);
        if (do_eval && test) fprintf(logf, "%.9g\t%.9g", test_loss, test_acc);
        else fputc('\t', logf);
        fputc('\n', logf);
        fflush(logf);
        if ((p->ckpt_every && step % p->ckpt_every == 0) || step == last_step || stop_signal()) {
            cls_checkpoint_save(ckpt_path, m, rs, 1);
            if (p->keep > 0) keep_step_checkpoint(p->out, ckpt_path, step, p->keep);
        }
        if (p->keep > 0 && do_eval && val && isfinite(val_acc) && val_acc > best_acc) {
            best_acc = val_acc;
            char *best = xasprintf("%s/best.ckpt", p->out);
            cls_checkpoint_save(best, m, rs, 1);
            free(best);
        }
        if (stop_signal()) {
            rc = stop_signal_report(ckpt_path, rs->step, h->steps, p->out);
            break;
        }
    }
    if (!rc) {
        stop_signals_release();
        if (rs->step < h->steps) printf("stopped at step %lld of %lld; continue with --resume\n", (long long)rs->step, (long long)h->steps);
        if (rs->step == step0) {                 // nothing to do: still leave a checkpoint behind
            cls_checkpoint_save(ckpt_path, m, rs, 1);
            printf("the run is already at step %lld of %lld: nothing to train (--steps or --epochs set a new total)\n"
                   "done: 0 steps\nsaved %s\n", (long long)rs->step, (long long)h->steps, ckpt_path);
            goto out;
        }
        double total = now_s() - t_start;
        char tot[32];
        fmt_duration(tot, sizeof tot, total);
        printf("done: %lld steps (%.4g epochs) in %s, %.1f examples/s, train loss %.4f (first step %.4f), train acc "
               "%.3f (means over %lld step%s of epoch %lld)", (long long)(rs->step - step0),
               (double)rs->step / (double)spe, tot, (double)(rs->step - step0) * h->B / total,
               ep_n ? ep_loss / ep_n : NAN, first_loss, ep_n ? ep_acc / ep_n : NAN, (long long)ep_n,
               ep_n == 1 ? "" : "s", (long long)((rs->step - 1) / spe + 1));
        if (bad_total) printf(", %lld steps skipped (non-finite)", (long long)bad_total);
        if (train->im && t_steps_all > 0)
            printf(", %.0f%% of the steps' time waiting for the loader", 100 * t_wait_all / t_steps_all);
        if (g_gpu) printf(", peak GPU memory %.0f MiB", dev_peak_mib());
        printf("\n");
        if (val_step) printf("val loss %.4f, val accuracy %.4f at step %lld\n", val_loss, val_acc, (long long)val_step);
        if (test_step) printf("test loss %.4f, test accuracy %.4f at step %lld\n", test_loss, test_acc, (long long)test_step);
        printf("saved %s\n", ckpt_path);
    }
out:
    fclose(logf);
    batch_free(&b);
    free(ckpt_path);
    free(log_path);
    cls_acts_free(acts);
    if (eacts) cls_acts_free(eacts);
    return rc;
}
