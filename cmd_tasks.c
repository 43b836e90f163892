// cmd_tasks.c: `hgrn2 generate`, the generators of synthetic task data (ListOps, Pathfinder): options in, one
// library call, exit code out.
#define _GNU_SOURCE
#include <getopt.h>

#include "cli.h"
#include "commands.h"
#include "images.h"
#include "lra.h"

static const char *GENERATE_USAGE =
    "hgrn2 generate --task listops --out DIR [--seed N] [--train-size N] [--val-size N] [--test-size N]\n"
    "       [--min-len N] [--max-len N] [--ops LIST]\n"
    "       hgrn2 generate --task pathfinder --size 32|128 --out DIR [--seed N] [--count N]";
static const char *GENERATE_HELP =
    "Generate a synthetic task's data in the layout of its official release, ready for hgrn2 prepare.\n"
    "\n"
    "  --task NAME         listops: the Long Range Arena's ListOps, DIR/basic_{train,val,test}.tsv (header\n"
    "                      Source<TAB>Target): expressions over [MIN, [MAX, [MED, [SM on digits, 2 to 10\n"
    "                      arguments per operator, depth at most 10, 501 to 1999 tokens without parentheses,\n"
    "                      labelled with their value (docs/lra.md); then\n"
    "                      hgrn2 prepare --task lra-listops --input DIR --out DIR2\n"
    "                      pathfinder: Pathfinder images in the official layout, DIR/metadata/<batch>.npy (text\n"
    "                      lines) and DIR/imgs/<batch>/sample_<k>.png: two marked endpoints joined (label 1) or\n"
    "                      not (label 0) by a dashed curved path, among other paths (docs/images.md); then\n"
    "                      hgrn2 prepare --task lra-pathfinder (--size 32) or lra-pathx (--size 128)\n"
    "                      --input DIR --out DIR2\n"
    "  --size N            pathfinder: 32 (Pathfinder) or 128 (Path-X); required\n"
    "  --count N           pathfinder: images, half of them positive (default 200000, as each official set)\n"
    "  --out DIR           output directory (created; the files must not exist already)\n"
    "  --seed N            the same seed and sizes give the same files (default 0)\n"
    "  --train-size N      listops: examples of the training split (default 96000)\n"
    "  --val-size N        listops: examples of the validation split (default 2000)\n"
    "  --test-size N       listops: examples of the test split (default 2000)\n"
    "  --min-len N --max-len N  listops: keep expressions of min < tokens < max, parentheses not counted\n"
    "                      (default 500 and 2000, the official set's; max at most 2000): shorter ListOps for\n"
    "                      quick experiments\n"
    "  --ops LIST          listops: draw only these operators, comma-separated (MIN,MAX,MED,SM; default all\n"
    "                      four, the official set's): which operators a model learns, one at a time (the\n"
    "                      operator is drawn uniformly among those given; everything else as the original)\n";

int cmd_generate(int argc, char **argv) {
    enum { G_TASK = 256, G_OUT, G_SEED, G_TRAIN, G_VAL, G_TEST, G_SIZE, G_COUNT, G_MINLEN, G_MAXLEN, G_OPS };
    static const struct option opts[] = {
        {"task", required_argument, 0, G_TASK}, {"out", required_argument, 0, G_OUT},
        {"seed", required_argument, 0, G_SEED}, {"train-size", required_argument, 0, G_TRAIN},
        {"val-size", required_argument, 0, G_VAL}, {"test-size", required_argument, 0, G_TEST},
        {"size", required_argument, 0, G_SIZE}, {"count", required_argument, 0, G_COUNT},
        {"min-len", required_argument, 0, G_MINLEN}, {"max-len", required_argument, 0, G_MAXLEN},
        {"ops", required_argument, 0, G_OPS}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    cli_start("hgrn2 generate", GENERATE_USAGE);
    opterr = 0;
    const char *task = NULL;
    ListopsOptions lo = {.sizes = {96000, 2000, 2000}, .min_len = LISTOPS_MIN_LEN, .max_len = LISTOPS_MAX_LEN};
    PathfinderOptions po = {.count = 200000};
    // Flags of one task that mean nothing to the other: refused with it, not ignored.
    const char *listops_flag = NULL, *pathfinder_flag = NULL;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': print_help(GENERATE_USAGE, GENERATE_HELP); return 0;
        case G_TASK: task = optarg; break;
        case G_OUT: lo.out = po.out = optarg; break;
        case G_SEED: lo.seed = po.seed = (uint64_t)arg_int("--seed", optarg, 0, INT64_MAX); break;
        case G_TRAIN: lo.sizes[0] = (uint64_t)arg_int("--train-size", optarg, 1, INT64_C(1) << 32); listops_flag = "--train-size"; break;
        case G_VAL: lo.sizes[1] = (uint64_t)arg_int("--val-size", optarg, 1, INT64_C(1) << 32); listops_flag = "--val-size"; break;
        case G_TEST: lo.sizes[2] = (uint64_t)arg_int("--test-size", optarg, 1, INT64_C(1) << 32); listops_flag = "--test-size"; break;
        case G_MINLEN: lo.min_len = (int)arg_int("--min-len", optarg, 0, LISTOPS_MAX_LEN - 2); listops_flag = "--min-len"; break;
        case G_MAXLEN: lo.max_len = (int)arg_int("--max-len", optarg, 2, LISTOPS_MAX_LEN); listops_flag = "--max-len"; break;
        case G_OPS: {
            const char *err;
            lo.ops = listops_parse_ops(optarg, &err);
            if (err) usage_error("--ops '%s' holds %s: give a comma-separated list of MIN, MAX, MED, SM", optarg, err);
            listops_flag = "--ops";
            break;
        }
        case G_SIZE:
            po.size = (int)arg_int("--size", optarg, 32, 128);
            if (po.size != 32 && po.size != 128) usage_error("--size must be 32 or 128, got %s", optarg);
            pathfinder_flag = "--size";
            break;
        case G_COUNT: po.count = (uint64_t)arg_int("--count", optarg, 2, INT64_C(1) << 24); pathfinder_flag = "--count"; break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!task) usage_error("--task is required");
    if (!lo.out) usage_error("--out is required");
    if (!strcmp(task, "listops")) {
        if (pathfinder_flag) usage_error("%s does not apply to --task listops", pathfinder_flag);
        if (lo.min_len + 1 >= lo.max_len)
            usage_error("--min-len %d and --max-len %d leave no length (kept: min < tokens < max)", lo.min_len, lo.max_len);
        return listops_generate(&lo);
    }
    if (!strcmp(task, "pathfinder")) {
        if (listops_flag) usage_error("%s does not apply to --task pathfinder", listops_flag);
        if (!po.size) usage_error("--task pathfinder needs --size 32 or --size 128");
        return pathfinder_generate(&po);
    }
    usage_error("--task must be listops or pathfinder, got '%s'", task);
}
