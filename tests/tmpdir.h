/* tmpdir.h: a scratch folder for tests that write files: made by setup,
 * emptied and removed by teardown; path_of names a file in it. */
#ifndef DBR_TESTS_TMPDIR_H
#define DBR_TESTS_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64];

/* prefix: e.g. "dbr_npz"; 0 or -1 (cmocka setup convention) */
static int tmpdir_make(const char *prefix) {
    snprintf(g_dir, sizeof g_dir, "/tmp/%s_XXXXXX", prefix);
    return mkdtemp(g_dir) ? 0 : -1;
}

static int tmpdir_remove(void) {
    DIR *d = opendir(g_dir);
    if (!d) return -1;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    return rmdir(g_dir);
}

/* g_dir/name in one of four rotating buffers */
static const char *path_of(const char *name) {
    static char bufs[4][512];
    static int k;
    char *p = bufs[k++ & 3];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

#endif
