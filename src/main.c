/* main: the one table of sub-commands. Every entry point of the `starling`
 * binary is listed here; each runs a cli_* function that parses its own
 * options from its own table (see cli.h).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "version.h"


static int cli_help(int argc, char **argv);
static int cli_version(int argc, char **argv);

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"synth", cli_synth, "write a synthetic ad-engagement log (the built-in default data)"},
    {"train", cli_train, "train a model from event logs"},
    {"info", cli_info, "print a model's header and verify its checksums"},
    {"segments", cli_segments, "a user's best segments"},
    {"score", cli_score, "a user's scores for the given segments"},
    {"eval", cli_eval, "evaluate a model on held-out events, against popularity, item-kNN and EASE"},
    {"tune", cli_tune, "search hyper-parameters on a split; write the best model"},
    {"export", cli_export, "write a model's factors (.npy), ids and history for other tools"},
    {"audience", cli_audience, "audiences, look-alikes and reach over a model or all of its shards (batch)"},
    {"quantize", cli_quantize, "store a model's user factors as int8 (a quarter of the bytes)"},
    {"shard", cli_shard, "split a model by user for serving behind twemproxy, with its nutcracker.yml"},
    {"import", cli_import, "build a model from factors trained elsewhere (.npy, text, JSON lines)"},
    {"serve", cli_serve, "serve a model over the Redis protocol"},
    {"help", cli_help, "list the commands, or show one command's help"},
    {"version", cli_version, "print the version"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: starling COMMAND [options]\n\n"
               "starling learns from engagement logs which users care about which ad\n"
               "segments, and answers targeting questions about them.\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`starling COMMAND --help` lists a command's options and their defaults.\n"
               "Exit codes: 0 success, 1 runtime error, 2 usage error.\n");
}

static int cli_help(int argc, char **argv)
{
    if (argc < 2) {
        usage(stdout);
        return ST_EXIT_OK;
    }
    const struct command *c = find(argv[1]);
    if (!c || c->run == cli_help) {
        fprintf(stderr, "starling help: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return ST_EXIT_USAGE;
    }
    char *args[] = {argv[1], "--help", NULL};
    return c->run(2, args);
}

static int cli_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("starling %s\n", st_version);
    return ST_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return ST_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) return cli_help(1, argv);
    if (strcmp(argv[1], "--version") == 0) return cli_version(1, argv);
    const struct command *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "starling: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return ST_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
