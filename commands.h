// commands.h: the subcommands of hgrn2, one function each, called by main with the command's own argv.
// Each reads its options, calls the library and returns the exit code (0; 1 runtime failure; 2 usage error).
#ifndef HGRN2_COMMANDS_H
#define HGRN2_COMMANDS_H

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_prepare(int argc, char **argv);    // cmd_data.c
int cmd_tokenize(int argc, char **argv);   // cmd_data.c
int cmd_generate(int argc, char **argv);   // cmd_tasks.c
int cmd_plot(int argc, char **argv);       // cmd_plot.c
// train and eval of the Long Range Arena's classification tasks (cmd_cls.c). cls_command_line says whether a
// train (eval 0) or eval (eval 1) command line is theirs: --task lra-* (or lra), or without --task, a
// checkpoint to resume or evaluate that is a classifier's.
int cls_command_line(int argc, char **argv, int eval);
int cmd_cls_train(int argc, char **argv);
int cmd_cls_eval(int argc, char **argv);
// bench --task imagenet: the JPEG loader's images/s alone, and the training step's (cmd_cls.c)
int cmd_cls_bench(int argc, char **argv);
// eval of a language model on zero-shot benchmarks (zeroshot.c): zeroshot_command_line says whether an eval
// command line is theirs (--task mc or --task lambada).
int zeroshot_command_line(int argc, char **argv);
int cmd_zeroshot_eval(int argc, char **argv);

#endif
