// commands.h: the subcommands of hgrn2, each a function of its own argv (argv[0] is the command's name)
// that reads its options, calls the library and returns the process exit code (0, 1 runtime, 2 usage).
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

#endif
