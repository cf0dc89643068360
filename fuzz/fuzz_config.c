/* fuzz_config: the config-file reader (`starling serve --config`) and the
 * option parser it feeds, on any bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    int port = 6400, flag = 0, choice = 0;
    uint64_t big = 0;
    double d = 0;
    const char *str = NULL;
    const st_opt opts[] = {
        {"port", 'p', ST_OPT_INT, &port, "PORT", "a number", 0},
        {"requirepass", 0, ST_OPT_STRING, &str, "SECRET", "a string", 0},
        {"maxclients", 0, ST_OPT_U64, &big, "N", "a count", 0},
        {"timeout", 0, ST_OPT_DOUBLE, &d, "S", "seconds", 0},
        {"allow-reload-path", 0, ST_OPT_FLAG, &flag, NULL, "a flag", 0},
        {"loglevel", 0, ST_OPT_CHOICE, &choice, NULL, "a choice", "debug|verbose|notice|warning"},
        {0},
    };
    enum { MAX = 128 };
    char *argv[MAX + 2], *pos[MAX + 2], err[ST_ERRLEN];
    static char names[MAX / 2][64];
    const char *model = NULL;
    argv[0] = "serve";
    int n = st_cli_config("fuzz.conf", text, opts, "model", &model, names, argv + 1, MAX, err);
    if (n >= 0) {
        /* The tokens through the option parser, its usage errors silenced. */
        const st_cmd_doc doc = {"serve", "MODEL", "fuzz", NULL};
        int npos;
        FILE *saved = stderr;
        stderr = fopen("/dev/null", "w");
        st_cli_parse(&doc, opts, n + 1, argv, pos, &npos);
        if (stderr) fclose(stderr);
        stderr = saved;
    }
    free(text);
    return 0;
}
