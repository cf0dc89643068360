/* acl: who may run what. Users with passwords, each with rights.
 *
 * Three rights, one per kind of client an ad platform runs:
 *   read   the targeting queries and the views (what an ad server needs)
 *   write  EVENT, FORGET and their aliases (what the event pipeline needs)
 *   admin  MODEL RELOAD, CONFIG, DEBUG, journal compaction, the settings
 *          that weaken privacy or durability
 * plus what every authenticated connection may do (PING, CLIENT SETNAME, ...).
 *
 * Users come from `user NAME RIGHTS PASSWORD` lines (the serve config file,
 * or --aclfile); RIGHTS is a comma list of read, write, admin, or all.
 * --requirepass is the `default` user's password, with every right (as
 * Redis 6 has it). With neither, every connection has every right (the
 * loopback-only default; protected mode covers a wider bind). With users
 * but no requirepass, the default user is off: every client must AUTH.
 *
 * Passwords are compared in time that depends only on their lengths. Owns
 * the users it parsed (st_acl_free). Never prints.
 */
#ifndef STARLING_ACL_H
#define STARLING_ACL_H

#include <stddef.h>

enum { ST_RIGHT_READ = 1u << 0, ST_RIGHT_WRITE = 1u << 1, ST_RIGHT_ADMIN = 1u << 2, ST_RIGHT_ALL = 7u };

/* Authenticated connections (and every connection when no password is
 * configured) have ST_RIGHT_AUTHED on top of their rights. */
enum { ST_RIGHT_AUTHED = 1u << 3 };

#define ST_ACL_MAX_USERS 64
#define ST_ACL_NAME_MAX 64

typedef struct {
    char name[ST_ACL_NAME_MAX + 1];
    char *pass;
    size_t pass_len;
    unsigned rights;
} st_acl_user;

typedef struct {
    st_acl_user users[ST_ACL_MAX_USERS];
    int n;
    const char *requirepass; /* the default user's password (not owned); NULL = none */
} st_acl;

void st_acl_init(st_acl *a);
void st_acl_free(st_acl *a);

/* Parses one `user NAME RIGHTS PASSWORD` line (the word `user` included;
 * PASSWORD may be "double quoted" to hold spaces). 0, or -1 with err giving
 * the reason (the caller adds FILE:LINE). */
int st_acl_add_line(st_acl *a, const char *line, char *err);

/* Reads an ACL file of such lines (# comments, blank lines). 0, or -1 with
 * err naming FILE:LINE. */
int st_acl_load_file(st_acl *a, const char *path, char *err);

/* Is any password configured (requirepass or a user)? */
int st_acl_required(const st_acl *a);

/* The rights of a connection that has not authenticated: every right and
 * ST_RIGHT_AUTHED when no password is configured, else none. */
unsigned st_acl_initial_rights(const st_acl *a);

/* The rights user (NULL or "default" = the default user) gets with pass:
 * its rights | ST_RIGHT_AUTHED, or 0 when the pair is wrong or the user is
 * off. */
unsigned st_acl_check(const st_acl *a, const char *user, size_t ulen, const char *pass, size_t plen);

/* "read,write" for a rights mask, into buf. */
const char *st_acl_rights_name(unsigned rights, char *buf, size_t cap);

#endif
