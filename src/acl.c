/* acl: users, passwords and rights (acl.h says what each right covers). */
#include "acl.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

void st_acl_init(st_acl *a) { memset(a, 0, sizeof *a); }

void st_acl_free(st_acl *a)
{
    for (int i = 0; i < a->n; i++) {
        if (a->users[i].pass) memset(a->users[i].pass, 0, a->users[i].pass_len);
        st_free(a->users[i].pass);
    }
    st_acl_init(a);
}

/* Compares in time that depends only on the lengths, not on where the
 * first difference is. */
static int secret_equal(const char *a, size_t la, const char *b, size_t lb)
{
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

/* The next word of *s (a "double quoted" one may hold spaces), into w. */
static int next_word(const char **s, char *w, size_t cap, size_t *len)
{
    const char *p = *s;
    while (*p == ' ' || *p == '\t') p++;
    size_t n = 0;
    if (*p == '"') {
        p++;
        while (*p && *p != '"') {
            if (n + 1 >= cap) return -1;
            w[n++] = *p++;
        }
        if (*p != '"') return -1;
        p++;
    } else {
        while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            if (n + 1 >= cap) return -1;
            w[n++] = *p++;
        }
    }
    w[n] = '\0';
    *len = n;
    *s = p;
    return 0;
}

static int parse_rights(const char *r, unsigned *out)
{
    unsigned m = 0;
    while (*r) {
        size_t n = strcspn(r, ",");
        if (n == 4 && strncasecmp(r, "read", 4) == 0) m |= ST_RIGHT_READ;
        else if (n == 5 && strncasecmp(r, "write", 5) == 0) m |= ST_RIGHT_WRITE;
        else if (n == 5 && strncasecmp(r, "admin", 5) == 0) m |= ST_RIGHT_ADMIN;
        else if (n == 3 && strncasecmp(r, "all", 3) == 0) m |= ST_RIGHT_ALL;
        else return -1;
        r += n;
        if (*r == ',') r++;
    }
    *out = m;
    return m ? 0 : -1;
}

int st_acl_add_line(st_acl *a, const char *line, char *err)
{
    char w[4][1024];
    size_t len[4];
    const char *s = line;
    for (int i = 0; i < 4; i++)
        if (next_word(&s, w[i], sizeof w[i], &len[i]) != 0 || len[i] == 0)
            return st_seterr(err, "expected `user NAME RIGHTS PASSWORD` (RIGHTS: read, write, admin or all, "
                                  "comma-separated; a PASSWORD with spaces in double quotes)");
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    if (*s && *s != '#') return st_seterr(err, "unexpected text after the password: `user NAME RIGHTS PASSWORD`");
    if (strcasecmp(w[0], "user") != 0) return st_seterr(err, "a line must start with `user`");
    if (len[1] > ST_ACL_NAME_MAX) return st_seterr(err, "user name longer than %d bytes", ST_ACL_NAME_MAX);
    for (size_t i = 0; i < len[1]; i++)
        if (!isalnum((unsigned char)w[1][i]) && !strchr("_-.@", w[1][i]))
            return st_seterr(err, "user name '%s' may hold letters, digits and _ - . @ only", w[1]);
    if (strcmp(w[1], "default") == 0)
        return st_seterr(err, "`default` is the --requirepass user; name this user otherwise");
    unsigned rights;
    if (parse_rights(w[2], &rights) != 0)
        return st_seterr(err, "rights '%s': expected read, write, admin or all, comma-separated", w[2]);
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->users[i].name, w[1]) == 0) return st_seterr(err, "user '%s' is defined twice", w[1]);
    if (a->n >= ST_ACL_MAX_USERS) return st_seterr(err, "more than %d users", ST_ACL_MAX_USERS);
    st_acl_user *u = &a->users[a->n];
    u->pass = st_malloc(len[3] + 1);
    if (!u->pass) return st_seterr(err, "out of memory");
    memcpy(u->pass, w[3], len[3] + 1);
    u->pass_len = len[3];
    memcpy(u->name, w[1], len[1] + 1); /* len[1] <= ST_ACL_NAME_MAX, checked above */
    u->rights = rights;
    a->n++;
    memset(w, 0, sizeof w);
    return 0;
}

int st_acl_load_file(st_acl *a, const char *path, char *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return st_seterr(err, "%s: %s", path, strerror(errno));
    char line[4096], why[ST_ERRLEN];
    int ln = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0') continue;
        if (st_acl_add_line(a, p, why) != 0) {
            rc = st_seterr(err, "%s:%d: %s", path, ln, why);
            break;
        }
    }
    fclose(f);
    memset(line, 0, sizeof line);
    return rc;
}

int st_acl_required(const st_acl *a) { return a && (a->requirepass || a->n > 0); }


unsigned st_acl_initial_rights(const st_acl *a) { return st_acl_required(a) ? 0 : ST_RIGHT_ALL | ST_RIGHT_AUTHED; }

unsigned st_acl_check(const st_acl *a, const char *user, size_t ulen, const char *pass, size_t plen)
{
    if (!a) return 0;
    if (!user || (ulen == 7 && memcmp(user, "default", 7) == 0)) {
        if (!a->requirepass) return 0;
        return secret_equal(pass, plen, a->requirepass, strlen(a->requirepass)) ? ST_RIGHT_ALL | ST_RIGHT_AUTHED : 0;
    }
    /* Every user's password is compared, so the time says nothing of which
     * names exist. */
    unsigned got = 0;
    for (int i = 0; i < a->n; i++) {
        const st_acl_user *u = &a->users[i];
        int same = strlen(u->name) == ulen && memcmp(u->name, user, ulen) == 0;
        int ok = secret_equal(pass, plen, u->pass, u->pass_len);
        if (same && ok) got = u->rights | ST_RIGHT_AUTHED;
    }
    return got;
}

const char *st_acl_rights_name(unsigned rights, char *buf, size_t cap)
{
    static const char *names[] = {"read", "write", "admin"};
    size_t w = 0;
    buf[0] = '\0';
    for (int i = 0; i < 3; i++)
        if (rights & (1u << i)) {
            int n = snprintf(buf + w, cap - w, "%s%s", w ? "," : "", names[i]);
            if (n < 0 || (size_t)n >= cap - w) break;
            w += (size_t)n;
        }
    if (!w) snprintf(buf, cap, "none");
    return buf;
}
