/* cli: one option table per sub-command drives both parsing and help.
 *
 * Accepted forms: --name VALUE, --name=VALUE, -x VALUE, -xVALUE, flags alone,
 * and "--" to end options. Options and positionals may be mixed.
 */
#include "cli.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int st_cli_usage(const st_cmd_doc *doc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "starling %s: ", doc->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nusage: starling %s %s\n(see `starling %s --help`)\n", doc->name, doc->usage, doc->name);
    va_end(ap);
    return ST_EXIT_USAGE;
}

int st_cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "starling %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return ST_EXIT_ERROR;
}

static void default_text(const st_opt *o, char *out, size_t n)
{
    out[0] = '\0';
    switch (o->type) {
    case ST_OPT_FLAG:
    case ST_OPT_LIST: break;
    case ST_OPT_INT: snprintf(out, n, "%d", *(int *)o->dest); break;
    case ST_OPT_U64: snprintf(out, n, "%llu", (unsigned long long)*(uint64_t *)o->dest); break;
    case ST_OPT_DOUBLE: snprintf(out, n, "%g", *(double *)o->dest); break;
    case ST_OPT_STRING:
        if (*(const char **)o->dest) snprintf(out, n, "%s", *(const char **)o->dest);
        break;
    case ST_OPT_CHOICE: {
        int idx = *(int *)o->dest, i = 0;
        const char *p = o->choices;
        while (i < idx && (p = strchr(p, '|'))) {
            p++;
            i++;
        }
        if (p) {
            size_t len = strcspn(p, "|");
            snprintf(out, n, "%.*s", (int)len, p);
        }
        break;
    }
    }
}

void st_cli_help(const st_cmd_doc *doc, const st_opt *opts, FILE *f)
{
    fprintf(f, "usage: starling %s %s\n\n%s\n", doc->name, doc->usage, doc->summary);
    if (opts && opts[0].name) fprintf(f, "\noptions:\n");
    for (const st_opt *o = opts; o && o->name; o++) {
        char left[96], def[128];
        const char *mv = o->type == ST_OPT_FLAG ? "" : o->type == ST_OPT_CHOICE ? o->choices : o->metavar;
        if (o->shortname)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->shortname, o->name, *mv ? " " : "", mv);
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, *mv ? " " : "", mv);
        default_text(o, def, sizeof def);
        if (strlen(left) > 28)
            fprintf(f, "  %s\n  %-28s %s", left, "", o->help);
        else
            fprintf(f, "  %-28s %s", left, o->help);
        if (def[0] && !strstr(o->help, "(default")) fprintf(f, " (default %s)", def); /* or the help says it */
        fputc('\n', f);
    }
    fprintf(f, "  -h, --help                   show this help\n");
    if (doc->details) fprintf(f, "\n%s\n", doc->details);
}

static int set_value(const st_cmd_doc *doc, const st_opt *o, const char *v)
{
    switch (o->type) {
    case ST_OPT_FLAG: *(int *)o->dest = 1; return 0;
    case ST_OPT_INT: {
        char *end;
        long x = strtol(v, &end, 10);
        if (!*v || *end || x < -2147483647L || x > 2147483647L)
            return st_cli_usage(doc, "--%s: '%s' is not a whole number", o->name, v);
        *(int *)o->dest = (int)x;
        return 0;
    }
    case ST_OPT_U64: {
        uint64_t x;
        if (st_parse_u64(v, &x) != 0)
            return st_cli_usage(doc, "--%s: '%s' is not a non-negative whole number", o->name, v);
        *(uint64_t *)o->dest = x;
        return 0;
    }
    case ST_OPT_DOUBLE: {
        double x;
        if (st_parse_double(v, &x) != 0) return st_cli_usage(doc, "--%s: '%s' is not a finite number", o->name, v);
        *(double *)o->dest = x;
        return 0;
    }
    case ST_OPT_STRING: *(const char **)o->dest = v; return 0;
    case ST_OPT_LIST: {
        st_opt_list *l = o->dest;
        if (l->n >= l->max) return st_cli_usage(doc, "--%s given more than %d times", o->name, l->max);
        l->v[l->n++] = v;
        return 0;
    }
    case ST_OPT_CHOICE: {
        int i = 0;
        size_t vl = strlen(v);
        for (const char *p = o->choices; p; i++) {
            size_t len = strcspn(p, "|");
            if (len == vl && strncmp(p, v, len) == 0) {
                *(int *)o->dest = i;
                return 0;
            }
            p = strchr(p, '|');
            if (p) p++;
        }
        return st_cli_usage(doc, "--%s: '%s' is not one of %s", o->name, v, o->choices);
    }
    }
    return ST_EXIT_USAGE;
}

int st_cli_parse(const st_cmd_doc *doc, const st_opt *opts, int argc, char **argv, char **pos, int *npos)
{
    *npos = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            st_cli_help(doc, opts, stdout);
            return ST_EXIT_OK;
        }
        const st_opt *o = NULL;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (const st_opt *p = opts; p && p->name; p++)
                if (strlen(p->name) == len && strncmp(p->name, name, len) == 0) o = p;
            if (eq) inline_val = eq + 1;
        } else {
            for (const st_opt *p = opts; p && p->name; p++)
                if (p->shortname == a[1]) o = p;
            if (o && a[2]) inline_val = a + 2;
        }
        if (!o) {
            /* A negative number is a positional (a weight, say), not an option. */
            if (a[1] == '.' || (a[1] >= '0' && a[1] <= '9')) {
                pos[(*npos)++] = a;
                continue;
            }
            return st_cli_usage(doc, "unknown option '%s'", a);
        }
        if (o->type == ST_OPT_FLAG) {
            if (inline_val) return st_cli_usage(doc, "--%s takes no value", o->name);
            *(int *)o->dest = 1;
            continue;
        }
        const char *v = inline_val;
        if (!v) {
            if (i + 1 >= argc) return st_cli_usage(doc, "--%s needs a value (%s)", o->name, o->metavar ? o->metavar : o->choices);
            v = argv[++i];
        }
        int rc = set_value(doc, o, v);
        if (rc) return rc;
    }
    return ST_CLI_GO;
}

int st_parse_duration(const char *s, double *seconds)
{
    if (!s || !*s) return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0) return -1;
    double unit = 1;
    if (*end) {
        if (end[1]) return -1;
        switch (*end) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return -1;
        }
    }
    *seconds = v * unit;
    return 0;
}

int st_cli_config(const char *file, char *text, const st_opt *opts, const char *extra, const char **extra_value,
                  char (*names)[64], char **out, int max, char *err)
{
    int count = 0, line = 0, nnames = 0;
    for (char *p = text; *p;) {
        line++;
        char *eol = strchr(p, '\n');
        char *next = eol ? eol + 1 : p + strlen(p);
        if (eol) *eol = '\0';
        char *hash = strchr(p, '#');
        char *s = p;
        while (isspace((unsigned char)*s)) s++;
        if (hash && (hash == s || !strchr(s, '"'))) *hash = '\0';
        char *name = s;
        while (*s && !isspace((unsigned char)*s)) s++;
        if (*s) *s++ = '\0';
        while (isspace((unsigned char)*s)) s++;
        char *value = s;
        if (*value == '"') {
            value++;
            char *q = strrchr(value, '"');
            if (!q) return st_seterr(err, "%s:%d: unbalanced quote", file, line);
            *q = '\0';
        } else {
            char *e = value + strlen(value);
            while (e > value && isspace((unsigned char)e[-1])) *--e = '\0';
        }
        p = next;
        if (!*name) continue;
        if (extra && strcmp(name, extra) == 0) {
            *extra_value = value;
            continue;
        }
        const st_opt *o = NULL;
        for (const st_opt *q = opts; q->name; q++)
            if (strcmp(q->name, name) == 0) o = q;
        if (!o || strcmp(name, "config") == 0) return st_seterr(err, "%s:%d: unknown setting '%s'", file, line, name);
        if (!*value) return st_seterr(err, "%s:%d: '%s' needs a value", file, line, name);
        if (count + 2 > max || nnames >= max / 2) return st_seterr(err, "%s:%d: too many settings", file, line);
        snprintf(names[nnames], 64, "--%s", name);
        if (o->type == ST_OPT_FLAG) {
            if (strcmp(value, "yes") == 0) out[count++] = names[nnames++];
            else if (strcmp(value, "no") != 0) return st_seterr(err, "%s:%d: '%s' takes yes or no", file, line, name);
        } else {
            out[count++] = names[nnames++];
            out[count++] = value;
        }
    }
    return count;
}
