/* cli: the command-line layer: option tables, help, and the sub-commands.
 *
 * Every sub-command declares its options in one st_opt table; the same table
 * drives parsing and `--help`, and the default shown in help is read from the
 * option's variable before parsing, so help never disagrees with behaviour.
 * Exit codes: 0 success, 1 runtime error, 2 usage error.
 */
#ifndef STARLING_CLI_H
#define STARLING_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "als.h"
#include "events.h"
#include "interactions.h"
#include "jinput.h"
#include "model.h"

enum { ST_EXIT_OK = 0, ST_EXIT_ERROR = 1, ST_EXIT_USAGE = 2, ST_CLI_GO = -1 };

typedef enum {
    ST_OPT_FLAG,
    ST_OPT_INT,
    ST_OPT_U64,
    ST_OPT_DOUBLE,
    ST_OPT_STRING,
    ST_OPT_CHOICE,
    ST_OPT_LIST
} st_opt_type;

/* A repeatable option's values, in the order given (ST_OPT_LIST): the
 * caller provides room for max of them; one more is a usage error. */
typedef struct {
    const char **v;
    int n, max;
} st_opt_list;

typedef struct {
    const char *name; /* long name without the dashes */
    char shortname;   /* 0 for none */
    st_opt_type type;
    void *dest;       /* int*, int*, uint64_t*, double*, const char**, int* (choice index), st_opt_list* */
    const char *metavar;
    const char *help;
    const char *choices; /* "a|b|c" for ST_OPT_CHOICE */
} st_opt;

typedef struct {
    const char *name;    /* "train" */
    const char *usage;   /* "EVENTS... -o MODEL [options]" */
    const char *summary; /* one line */
    const char *details; /* printed after the options; may be NULL */
} st_cmd_doc;

/* Parses argv (argv[0] is the sub-command name). Positionals are collected
 * into pos (room for argc entries) in order. Returns ST_CLI_GO to go on, or
 * an exit code to stop with: ST_EXIT_OK after printing help, ST_EXIT_USAGE
 * after printing what is wrong. */
int st_cli_parse(const st_cmd_doc *doc, const st_opt *opts, int argc, char **argv, char **pos, int *npos);

void st_cli_help(const st_cmd_doc *doc, const st_opt *opts, FILE *f);

/* Prints "starling CMD: message" and a pointer to --help; returns ST_EXIT_USAGE. */
int st_cli_usage(const st_cmd_doc *doc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "starling CMD: message"; returns ST_EXIT_ERROR. */
int st_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a config file's text (modified in place): one `name value` per
 * line with the names of the long options in opts; `#` starts a comment
 * (not inside a quoted value); "quoted values" keep their spaces; a flag
 * takes yes or no. A line naming `extra` (e.g. "model") sets *extra_value
 * instead. Appends "--name" "value" tokens to out (room for max), the names
 * written into names (max / 2 of them); the tokens point into text and
 * names. Returns the count, or -1 with "FILE:LINE: reason" in err (file
 * names the text in messages). Never prints. */
int st_cli_config(const char *file, char *text, const st_opt *opts, const char *extra, const char **extra_value,
                  char (*names)[64], char **out, int max, char *err);

/* ---- models and journals (cli_model.c) ---------------------------------------
 *
 * A batch command that reads a model takes the journal of the server that
 * serves it (--journal, once per model file, in the same order): a user the
 * journal forgot never appears in what it prints or writes (jinput.h). */

/* ST_CLI_GO when journals is empty or has one entry per model file; else a
 * usage error, said. */
int st_cli_journals(const st_cmd_doc *doc, const st_opt_list *journals, int nmodels);

/* The model files and journals of `audience`, `segments`, `score` (jinput.h,
 * st_jmodel): each prints why it failed and returns an exit code. */
int st_cli_model_load(const char *cmd, const char *path, st_jmodel *jm);
/* Replays journal beside the model loaded from path (check: st_jmodel_replay)
 * and says on stderr what it applied; *id (may be NULL) receives the
 * journal's id. */
int st_cli_model_replay(const char *cmd, const char *path, st_jmodel *jm, const char *journal, st_jrecord_fn check,
                        void *ctx, uint64_t *id);
/* Loads path with journal (may be NULL) and finds user: ST_EXIT_OK, or an
 * exit code after printing why, the forgotten answered as the unknown are
 * (jm is freed then). */
int st_cli_load_user(const char *cmd, const char *path, const char *journal, const char *user, st_jmodel *jm,
                     st_juser *u);

/* ST_EXIT_OK when m is calibrated; else prints what to do and returns
 * ST_EXIT_ERROR (for --calibrated). */
int st_cli_need_calibration(const char *cmd, const char *path, const st_model *m);

/* A model as `export`, `shard` and `quantize` read it: *m is the file, or
 * with a journal the file less every user the journal forgot. */
typedef struct {
    st_model src;
    st_jerased erased;
    const st_model *m;
    int loaded;
} st_cli_erased;

/* ST_EXIT_OK, or an exit code after printing why (e is freed then). */
int st_cli_load_erased(const char *cmd, const char *path, const char *journal, st_cli_erased *e);
void st_cli_erased_free(st_cli_erased *e);

/* ---- batch forms (cli_batch.c) ----------------------------------------------
 *
 * `segments --users FILE|-` and `--all-users`, `score --users FILE|-`,
 * `audience --all-segments`: one model load for many users. Unknown users
 * are reported on stderr (FILE:LINE) and skipped. Each returns an exit code
 * after printing why it failed. */
typedef struct {
    const char *model, *journal; /* journal may be NULL */
    const char *users;           /* FILE, "-" for stdin, NULL for every user */
    char **segments;             /* score: the segments asked, nsegments of them */
    int nsegments;
    uint64_t count, min_audience;
    double min;
    int exclude_seen, calibrated, json, threads;
} st_cli_batch;

int st_cli_batch_segments(const st_cli_batch *b);
int st_cli_batch_score(const st_cli_batch *b);
int st_cli_batch_audiences(const st_cli_batch *b);

/* One user's ranked segments (idx, top: n of them) as SEGMENT<TAB>SCORE lines
 * (USER<TAB>SEGMENT<TAB>SCORE with with_user) or one JSON line
 * {"user": ..., "segments": [{"segment": ..., "score"|"probability": ...}]}. */
void st_cli_print_segments(const st_model *m, const char *user, const uint32_t *idx, const float *top, uint32_t n,
                           int calibrated, int json, int with_user);

/* Parses a duration: a number with an optional unit s, m, h, d, w (seconds
 * when none). 0 on success. */
int st_parse_duration(const char *s, double *seconds);

/* The training options shared by `train`, `eval` and `tune` (cli_train.c):
 * one table, appended to each command's own. */
typedef struct {
    st_als_params p;
    const char *kinds, *half_life, *now;
    int conf, solver, reg, missing, on_error, header, threads;
    uint64_t factors, iterations, cg_steps, max_line;
} st_train_cli;

#define ST_TRAIN_CLI_NOPTS 32 /* room a command leaves for them */

void st_train_cli_init(st_train_cli *c);
/* Appends the training options to opts at *n (advancing *n). */
void st_train_cli_opts(st_train_cli *c, st_opt *opts, int *n);
/* Checks the parsed options and fills p, w (free with st_weighting_free)
 * and ro. Returns ST_CLI_GO, or a usage exit code after saying what is wrong. */
int st_train_cli_finish(st_train_cli *c, const st_cmd_doc *doc, st_als_params *p, st_weighting *w,
                        st_read_opts *ro);

/* The sub-commands (cli_*.c). */
int cli_synth(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_segments(int argc, char **argv);
int cli_score(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_import(int argc, char **argv);
int cli_shard(int argc, char **argv);
int cli_audience(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_tune(int argc, char **argv);

#endif
